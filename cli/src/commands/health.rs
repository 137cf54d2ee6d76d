//! The healthcheck flags of `service create` and `service update`, as docker's:
//! `--health-cmd`, `--health-interval`, `--health-timeout`, `--health-retries`,
//! `--health-start-period` and `--no-healthcheck`.

use clap::Args;
use shoal_proto::HealthConfig;

use crate::parse::{self, flag};

#[derive(Debug, Default, Args)]
pub struct HealthArgs {
    /// Command to run to check health (run by the container's shell)
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    health_cmd: Option<String>,
    /// Time between running the check, e.g. 30s
    #[arg(long, value_name = "DURATION", value_parser = flag(parse::duration_ms))]
    health_interval: Option<i64>,
    /// Maximum time to allow one check to run, e.g. 30s
    #[arg(long, value_name = "DURATION", value_parser = flag(parse::duration_ms))]
    health_timeout: Option<i64>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = flag(parse::count))]
    health_retries: Option<u64>,
    /// Start period for the container to initialize before counting retries, e.g. 10s
    #[arg(long, value_name = "DURATION", value_parser = flag(parse::duration_ms))]
    health_start_period: Option<i64>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long, conflicts_with_all = [
        "health_cmd", "health_interval", "health_timeout", "health_retries", "health_start_period",
    ])]
    no_healthcheck: bool,
}

/// The test of `--no-healthcheck`: docker's "disable the image's HEALTHCHECK".
pub const NONE: &str = "NONE";

impl HealthArgs {
    fn any_option(&self) -> bool {
        self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
    }

    /// The healthcheck `service create` sends; `None` keeps the image's own.
    pub fn healthcheck(&self) -> Option<HealthConfig> {
        self.apply(None)
    }

    /// `existing` changed by the flags, as `service update` does it: the flags given replace
    /// their fields; `--no-healthcheck` disables the check; options without `--health-cmd`
    /// on a disabled check go back to the image's command.
    pub fn apply(&self, existing: Option<HealthConfig>) -> Option<HealthConfig> {
        if self.no_healthcheck {
            return Some(HealthConfig {
                test: vec![NONE.to_string()],
                ..Default::default()
            });
        }
        if !self.any_option() {
            return existing;
        }
        let mut h = existing.unwrap_or_default();
        if h.test.first().map(String::as_str) == Some(NONE) {
            h.test.clear();
        }
        if let Some(cmd) = &self.health_cmd {
            h.test = vec!["CMD-SHELL".to_string(), cmd.clone()];
        }
        if let Some(ms) = self.health_interval {
            h.interval_ms = ms;
        }
        if let Some(ms) = self.health_timeout {
            h.timeout_ms = ms;
        }
        if let Some(n) = self.health_retries {
            h.retries = n;
        }
        if let Some(ms) = self.health_start_period {
            h.start_period_ms = ms;
        }
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        health: HealthArgs,
    }

    fn parse(argv: &[&str]) -> Result<HealthArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("shoal").chain(argv.iter().copied())).map(|c| c.health)
    }

    #[test]
    fn flags_build_dockers_healthcheck() {
        let h = parse(&[
            "--health-cmd",
            "curl -f http://localhost/ || exit 1",
            "--health-interval",
            "1s",
            "--health-timeout",
            "500ms",
            "--health-retries",
            "3",
            "--health-start-period",
            "1m",
        ])
        .expect("parse");
        assert_eq!(
            h.healthcheck(),
            Some(HealthConfig {
                test: vec![
                    "CMD-SHELL".to_string(),
                    "curl -f http://localhost/ || exit 1".to_string()
                ],
                interval_ms: 1_000,
                timeout_ms: 500,
                retries: 3,
                start_period_ms: 60_000,
            })
        );
    }

    #[test]
    fn no_flags_keep_the_images_healthcheck() {
        let h = parse(&[]).expect("parse");
        assert_eq!(h.healthcheck(), None);
        let old = HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            retries: 2,
            ..Default::default()
        };
        assert_eq!(h.apply(Some(old.clone())), Some(old));
    }

    #[test]
    fn no_healthcheck_is_none_and_conflicts_with_the_others() {
        let h = parse(&["--no-healthcheck"]).expect("parse");
        assert_eq!(
            h.healthcheck(),
            Some(HealthConfig {
                test: vec!["NONE".to_string()],
                ..Default::default()
            })
        );
        for other in [
            ["--health-cmd", "true"],
            ["--health-interval", "1s"],
            ["--health-timeout", "1s"],
            ["--health-retries", "1"],
            ["--health-start-period", "1s"],
        ] {
            let err = parse(&["--no-healthcheck", other[0], other[1]]).expect_err("conflict");
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{other:?}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = parse(&["--health-interval", "5x"]).expect_err("bad duration");
        assert!(err.to_string().contains("--health-interval"), "{err}");
        let err = parse(&["--health-retries", "-1"]).expect_err("negative");
        assert!(err.to_string().contains("--health-retries"), "{err}");
    }

    #[test]
    fn update_merges_into_the_existing_check() {
        let old = HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval_ms: 5_000,
            retries: 2,
            ..Default::default()
        };
        let h = parse(&["--health-retries", "7"]).expect("parse");
        assert_eq!(
            h.apply(Some(old.clone())),
            Some(HealthConfig {
                retries: 7,
                ..old.clone()
            })
        );
        // Options on a disabled check bring back the image's command.
        let disabled = HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        let h = parse(&["--health-interval", "2s"]).expect("parse");
        assert_eq!(
            h.apply(Some(disabled)),
            Some(HealthConfig {
                interval_ms: 2_000,
                ..Default::default()
            })
        );
        let h = parse(&["--no-healthcheck"]).expect("parse");
        assert_eq!(
            h.apply(Some(old)).map(|h| h.test),
            Some(vec!["NONE".to_string()])
        );
    }
}
