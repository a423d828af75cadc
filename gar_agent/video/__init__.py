"""Videos: the frame and audio window at a time (decode), one analysis per time (analyse),
boxes followed between analysed times (follow), and the annotated video and timeline (track)."""
