//! The clicks of keys with a webhook, from the click stream (consumer group `webhooks`) to
//! `webhook_clicks`; [`crate::store::Store::batch_staged_clicks`] turns them into
//! `link.clicked` events once a second.
//!
//! Exactly once into the staging table: a click is staged under its own id, and the stream
//! entries are acknowledged only after the statement committed, so a batch read again after a
//! crash stages nothing twice.

use anyhow::anyhow;
use chrono::{TimeZone, Utc};
use uuid::Uuid;

use super::Pipeline;
use crate::clicks::consumer::Process;
use crate::clicks::consumer::{acknowledge, Consumer, StepOutcome};
use crate::clicks::enrich::enrich;
use crate::clicks::event::events_of_entry;
use crate::clicks::{ClickEvent, ClickKind};
use crate::store::StagedClick;

pub const GROUP: &str = Process::Webhooks.group();

/// Reads one batch, stages the clicks of keys that have a webhook, then acknowledges the
/// batch. Unreadable entries and records are skipped here: the worker moves them to the
/// dead-letter stream.
pub async fn step(p: &Pipeline, consumer: &mut Consumer) -> anyhow::Result<StepOutcome> {
    let entries = consumer
        .read(p)
        .await
        .map_err(|e| anyhow!("reading the click stream: {e}"))?;
    if entries.is_empty() {
        return Ok(StepOutcome::Empty);
    }
    let mut clicks = 0usize;
    let mut events: Vec<ClickEvent> = Vec::new();
    for entry in entries.iter() {
        match events_of_entry(&entry.fields) {
            Ok(records) => {
                clicks += records.len();
                events.extend(
                    records
                        .into_iter()
                        .filter_map(Result::ok)
                        .filter(|e| e.kind == ClickKind::Click),
                );
            }
            Err(_) => clicks += 1,
        }
    }
    let mut owners: Vec<Uuid> = events.iter().map(|e| e.owner_key_id).collect();
    owners.sort_unstable();
    owners.dedup();
    if !owners.is_empty() {
        let with_webhook = p
            .store
            .keys_with_webhooks(&owners)
            .await
            .map_err(|e| anyhow!("looking up webhook keys: {e}"))?;
        if !with_webhook.is_empty() {
            let staged: Vec<StagedClick> = events
                .into_iter()
                .filter(|e| with_webhook.contains(&e.owner_key_id))
                .map(|e| staged_click(e, p))
                .collect();
            p.store
                .stage_webhook_clicks(&staged)
                .await
                .map_err(|e| anyhow!("staging webhook clicks: {e}"))?;
        }
    }
    let ids: Vec<_> = entries.iter().map(|e| e.id).collect();
    acknowledge(p, consumer, &ids, clicks, clicks.div_ceil(entries.len())).await
}

/// A click as a webhook receiver sees it: region, device class, referrer host and bot flag
/// worked out like the worker's (GeoIP included), the rule URL if a rule served it.
fn staged_click(e: ClickEvent, p: &Pipeline) -> StagedClick {
    let enriched = enrich(e, p.geo.as_deref());
    let at = Utc
        .timestamp_millis_opt(enriched.event.at_ms)
        .single()
        .unwrap_or_else(Utc::now);
    StagedClick {
        click_id: enriched.event.id,
        link_id: enriched.event.link_id,
        at,
        region: enriched.region,
        device: enriched.device_class,
        referrer_host: enriched.referrer_host,
        bot: enriched.is_bot,
        rule_url: enriched.event.rule_url,
    }
}
