//! The authenticated HTTP(S) front side of the proxy server (being built: issue 6).
