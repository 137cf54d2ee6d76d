//! The restart-policy and resource flags of `service create` and `service update`, as
//! docker's: `--restart-condition|delay|max-attempts|window`,
//! `--reserve-cpu|memory`, `--limit-cpu|memory`. Create applies them to nothing; update to
//! the service's current spec, changing only what is given.

use clap::{Args, ValueEnum};
use shoal_proto::{Resources, RestartCondition, RestartPolicy};

use crate::parse::{self, flag};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Condition {
    Any,
    OnFailure,
    None,
}

#[derive(Debug, Default, Args)]
pub struct RestartArgs {
    /// Restart when condition is met (default any)
    #[arg(long, value_enum, value_name = "CONDITION")]
    restart_condition: Option<Condition>,
    /// Delay between restart attempts, e.g. 5s (default 5s)
    #[arg(long, value_name = "DURATION", value_parser = flag(parse::duration_ms))]
    restart_delay: Option<i64>,
    /// Maximum number of restarts before giving up (default: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = flag(parse::count))]
    restart_max_attempts: Option<u64>,
    /// Window used to evaluate the restart policy, e.g. 1m
    #[arg(long, value_name = "DURATION", value_parser = flag(parse::duration_ms))]
    restart_window: Option<i64>,
}

impl RestartArgs {
    /// `existing` with the flags given replacing their fields; `None` stays `None` when no
    /// flag is given (Swarm's defaults then apply).
    pub fn apply(&self, existing: Option<RestartPolicy>) -> Option<RestartPolicy> {
        let any = self.restart_condition.is_some()
            || self.restart_delay.is_some()
            || self.restart_max_attempts.is_some()
            || self.restart_window.is_some();
        if !any {
            return existing;
        }
        let mut p = existing.unwrap_or_default();
        if let Some(c) = self.restart_condition {
            p.condition = match c {
                Condition::Any => RestartCondition::Any,
                Condition::OnFailure => RestartCondition::OnFailure,
                Condition::None => RestartCondition::None,
            } as i32;
        }
        if let Some(ms) = self.restart_delay {
            p.delay_ms = Some(ms);
        }
        if let Some(n) = self.restart_max_attempts {
            p.max_attempts = n;
        }
        if let Some(ms) = self.restart_window {
            p.window_ms = ms;
        }
        Some(p)
    }
}

#[derive(Debug, Default, Args)]
pub struct ResourceArgs {
    /// Reserve CPUs, e.g. 0.5
    #[arg(long, value_name = "CPUS", allow_negative_numbers = true, value_parser = flag(parse::nano_cpus))]
    reserve_cpu: Option<i64>,
    /// Reserve memory, e.g. 64M (units b, k, m, g)
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, value_parser = flag(parse::memory_bytes))]
    reserve_memory: Option<i64>,
    /// Limit CPUs, e.g. 1.5
    #[arg(long, value_name = "CPUS", allow_negative_numbers = true, value_parser = flag(parse::nano_cpus))]
    limit_cpu: Option<i64>,
    /// Limit memory, e.g. 512M (units b, k, m, g)
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, value_parser = flag(parse::memory_bytes))]
    limit_memory: Option<i64>,
}

impl ResourceArgs {
    /// The limits, changed by `--limit-*` (0 removes a limit, as docker's).
    pub fn limits(&self, existing: Option<Resources>) -> Option<Resources> {
        merge(existing, self.limit_cpu, self.limit_memory)
    }

    /// The reservations, changed by `--reserve-*`.
    pub fn reservations(&self, existing: Option<Resources>) -> Option<Resources> {
        merge(existing, self.reserve_cpu, self.reserve_memory)
    }
}

fn merge(existing: Option<Resources>, cpu: Option<i64>, memory: Option<i64>) -> Option<Resources> {
    if cpu.is_none() && memory.is_none() {
        return existing;
    }
    let mut r = existing.unwrap_or_default();
    if let Some(n) = cpu {
        r.nano_cpus = n;
    }
    if let Some(b) = memory {
        r.memory_bytes = b;
    }
    Some(r)
}
