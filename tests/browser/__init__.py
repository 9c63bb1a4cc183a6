"""Real-browser tests: the system Chromium drives the console served by the real app."""
