"""The analysis server: decode, optical flow, two-stream classifier, SAS, alarms, subscribers."""
