//! `facelock audit`: the audit trail, newest first, one JSON object per line.

use std::time::Duration;

use facelock::{clock::Timestamp, config::Settings, service::AuditKind, store::AuditQuery};

use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// Only events of this kind (login_failed, account_locked, token_refused, ...).
    #[arg(long)]
    kind: Option<String>,
    /// Only events about this user id.
    #[arg(long)]
    user: Option<String>,
    /// Only events from this client address.
    #[arg(long)]
    address: Option<String>,
    /// Only events of the last period: 30m, 12h, 7d.
    #[arg(long)]
    since: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

pub async fn run(settings: &Settings, args: Args) -> CliResult {
    if let Some(kind) = &args.kind {
        if AuditKind::parse(kind).is_none() {
            let known: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(
                format!("unknown kind {kind:?}; the kinds are {}", known.join(", ")).into(),
            );
        }
    }
    let since = args
        .since
        .as_deref()
        .map(parse_period)
        .transpose()?
        .map(|period| Timestamp::now() - period);
    let store = facelock::open_store(settings).await?;
    let query = AuditQuery {
        kind: args.kind,
        user_id: args.user,
        address: args.address,
        since,
        limit: args.limit.clamp(1, 100_000),
    };
    for event in store.audit_events(query).await? {
        println!("{}", serde_json::to_string(&event)?);
    }
    Ok(())
}

/// `30m`, `12h`, `7d`, `45s`.
fn parse_period(raw: &str) -> Result<Duration, String> {
    let bad = || format!("{raw:?} is not a period like 30m, 12h or 7d");
    let (number, unit) = raw.split_at(raw.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(seconds))
}
