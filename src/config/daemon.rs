//! `[daemon]` and `[schedule]`: the daemon's listen address, time zone and job schedules.

use std::net::{Ipv4Addr, SocketAddr};

use chrono_tz::Tz;

use super::toml_walk::{Issues, Section};
use crate::daemon::cron::CronSchedule;

/// The address `/healthz` and `/metrics` are served on when `[daemon] listen` is absent.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// The settings read from these tables.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    /// Address of the `/healthz` and `/metrics` server; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The zone cron expressions are read in.
    pub time_zone: Tz,
    pub schedule: ScheduleConfig,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: DEFAULT_LISTEN,
            time_zone: Tz::UTC,
            schedule: ScheduleConfig::default(),
        }
    }
}

/// One schedule per job; `None` when the job is `"off"`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleConfig {
    pub pull_and_score: Option<CronSchedule>,
    pub retrain: Option<CronSchedule>,
    pub territory_lists: Option<CronSchedule>,
    pub outcomes_report: Option<CronSchedule>,
}

/// Default schedules: every 30 minutes, Sunday 03:00, Monday 07:00, 06:00 on the 1st.
pub(super) const DEFAULT_PULL_AND_SCORE: &str = "*/30 * * * *";
pub(super) const DEFAULT_RETRAIN: &str = "0 3 * * SUN";
pub(super) const DEFAULT_TERRITORY_LISTS: &str = "0 7 * * MON";
pub(super) const DEFAULT_OUTCOMES_REPORT: &str = "0 6 1 * *";

impl Default for ScheduleConfig {
    fn default() -> Self {
        let parse = |text: &str| CronSchedule::parse(text).ok();
        ScheduleConfig {
            pull_and_score: parse(DEFAULT_PULL_AND_SCORE),
            retrain: parse(DEFAULT_RETRAIN),
            territory_lists: parse(DEFAULT_TERRITORY_LISTS),
            outcomes_report: parse(DEFAULT_OUTCOMES_REPORT),
        }
    }
}

/// Reads `[daemon]` and `[schedule]`.
pub(super) fn read_daemon(top: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> DaemonConfig {
    let mut config = DaemonConfig::default();

    let mut daemon = top.table(issues, "daemon");
    let listen_example = r#"listen = "127.0.0.1:9464""#;
    if let Some(value) = daemon.string(issues, "listen", listen_example) {
        match value.get_ref().trim().parse::<SocketAddr>() {
            Ok(addr) => config.listen = addr,
            Err(_) => issues.push(
                value.span(),
                &daemon.key_path("listen"),
                format!(
                    "{:?} is not an IP address and port; give both, for example 127.0.0.1:9464 (port 0 picks a free port)",
                    value.get_ref()
                ),
                Some(listen_example),
            ),
        }
    }
    let zone_example = r#"time_zone = "America/New_York""#;
    if let Some(value) = daemon.string(issues, "time_zone", zone_example) {
        match value.get_ref().trim().parse::<Tz>() {
            Ok(zone) => config.time_zone = zone,
            Err(_) => issues.push(
                value.span(),
                &daemon.key_path("time_zone"),
                format!(
                    "{:?} is not an IANA time zone name; use a name such as UTC, Europe/Berlin or America/Chicago",
                    value.get_ref()
                ),
                Some(zone_example),
            ),
        }
    }
    daemon.finish(issues);

    let mut schedule = top.table(issues, "schedule");
    let jobs: [(&'static str, &str, &mut Option<CronSchedule>); 4] = [
        (
            "pull_and_score",
            DEFAULT_PULL_AND_SCORE,
            &mut config.schedule.pull_and_score,
        ),
        ("retrain", DEFAULT_RETRAIN, &mut config.schedule.retrain),
        (
            "territory_lists",
            DEFAULT_TERRITORY_LISTS,
            &mut config.schedule.territory_lists,
        ),
        (
            "outcomes_report",
            DEFAULT_OUTCOMES_REPORT,
            &mut config.schedule.outcomes_report,
        ),
    ];
    for (key, default, slot) in jobs {
        let example = format!("{key} = {default:?}");
        let Some(value) = schedule.string(issues, key, &example) else {
            continue;
        };
        let text = value.get_ref().trim();
        if text.eq_ignore_ascii_case("off") {
            *slot = None;
            continue;
        }
        match CronSchedule::parse(text) {
            // UTC is enough here: a zone moves fire times by hours, not in or out of existence.
            Ok(parsed) if parsed.next_after(chrono::Utc::now(), chrono_tz::UTC).is_none() => {
                issues.push(
                    value.span(),
                    &schedule.key_path(key),
                    format!("the cron expression {text:?} never fires (no matching time in the next eight years, for example the 31st of February); or \"off\" to disable the job"),
                    Some(&example),
                )
            }
            Ok(parsed) => *slot = Some(parsed),
            Err(err) => issues.push(
                value.span(),
                &schedule.key_path(key),
                format!("invalid cron expression: {err}; or \"off\" to disable the job"),
                Some(&example),
            ),
        }
    }
    schedule.finish(issues);
    config
}
