//! The mTLS reverse tunnel and the [`super::Dialer`] over it (being built: issue 6).
