"""The harness protocol: frames (sans-I/O), transports, and the client and server sides."""
