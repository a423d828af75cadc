"""Chat-model adapters (local Qwen-Omni, scripted answers) and backend resolution."""
