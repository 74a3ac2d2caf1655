//! `wpgate serve`'s flags.

use crate::serve::ServeOptions;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Graceful binary upgrade: take over the listening sockets of the running gateway
    /// (same data directory) once it is sent SIGQUIT; no connection is refused.
    #[arg(long)]
    pub upgrade: bool,
}

impl ServeArgs {
    pub fn options(&self) -> ServeOptions {
        ServeOptions {
            upgrade: self.upgrade,
        }
    }
}
