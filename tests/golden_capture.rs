//! Placeholder until the decoder's capture test lands.
