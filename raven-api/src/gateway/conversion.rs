//! Conversion between v1alpha1 and v1beta1 (placeholder until the lossless implementation).
