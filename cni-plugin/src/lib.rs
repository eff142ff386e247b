//! raven-cni library
