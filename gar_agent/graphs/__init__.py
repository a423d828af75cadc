"""The shipped graph topologies, one per file (`graphs/` at the top of a checkout links here).

Each file is loaded by path (`gar_agent.topology.load_topology`), never imported as a module of this
package; the package exists so that an installed wheel carries them.
"""
