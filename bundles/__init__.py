"""The signed offline bundle: format, build, sign, inspect, and the verifier the installer shares."""
