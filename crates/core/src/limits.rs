//! Configurable limits, with the spec's defaults.

#[derive(Debug, Clone)]
pub struct Limits {
    pub text_chars: usize,
    pub messages_per_conversation: i64,
    pub integrations_per_account: i64,
    pub attachment_bytes: u64,
    pub tags_per_conversation: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            text_chars: 4096,
            messages_per_conversation: 30_000,
            integrations_per_account: 500,
            attachment_bytes: 25 * 1024 * 1024,
            tags_per_conversation: 50,
        }
    }
}
