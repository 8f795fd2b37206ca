"""Response desensitisation: strategies, identifier detection and body codecs."""
