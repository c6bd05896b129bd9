//! Sans-IO audio for telephone calls. No tokio, no clock: every function takes samples in and
//! hands samples out; time is counted in samples.
