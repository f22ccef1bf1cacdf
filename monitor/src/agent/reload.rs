//! SIGHUP: read the config file again and apply what can change while running (the verdict
//! policy). Each change is logged as `key: old → new`; a setting that needs a restart is logged
//! and kept; a file that does not load is one error line, and the agent runs on as before.

use std::{sync::Arc, time::SystemTime};

use crate::{
    config::{ConfigError, RunConfig},
    export::metrics::ReloadMetrics,
    model::format::error_chain,
    scan::Pipeline,
};

/// Loads the settings again: flags over the file over defaults, as at start.
pub(crate) type LoadConfig = Box<dyn Fn() -> Result<RunConfig, ConfigError> + Send>;

/// What a reload reads and updates.
pub(crate) struct Reloader {
    /// What the agent runs on: the start's settings with every applied reload's policy.
    running: RunConfig,
    load: LoadConfig,
    pipeline: Arc<Pipeline>,
    metrics: ReloadMetrics,
}

impl Reloader {
    /// A reloader for an agent started with `running` (its load counts as the first success).
    pub(crate) fn new(
        running: RunConfig,
        load: LoadConfig,
        pipeline: Arc<Pipeline>,
        metrics: ReloadMetrics,
    ) -> Self {
        metrics.succeeded(SystemTime::now());
        Self {
            running,
            load,
            pipeline,
            metrics,
        }
    }

    /// Loads the config and applies the policy if it changed; logs every change.
    pub(crate) fn reload(&mut self) {
        let new = match (self.load)() {
            Ok(new) => new,
            Err(error) => {
                tracing::error!(
                    error = %error_chain(&error),
                    "config reload rejected; running on the previous config"
                );
                self.metrics.failed();
                return;
            }
        };
        let changes = self.running.changes(&new);
        let (mut applied, mut kept) = (0, 0);
        for change in &changes {
            let (key, old, new) = (change.key, &change.old, &change.new);
            if change.is_live() {
                applied += 1;
                tracing::info!(%key, %old, %new, "setting reloaded");
            } else {
                kept += 1;
                tracing::warn!(
                    %key,
                    %old,
                    %new,
                    "setting changed, but only applies at a restart; keeping the running value"
                );
            }
        }
        if applied > 0 {
            self.pipeline.set_policy(new.policy.clone());
            self.running.policy = new.policy;
        }
        self.metrics.succeeded(SystemTime::now());
        tracing::info!(applied, needs_restart = kept, "config reloaded");
    }
}
