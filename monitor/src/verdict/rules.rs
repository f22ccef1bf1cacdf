//! Rules (in progress).
