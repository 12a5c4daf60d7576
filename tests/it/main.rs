//! One integration-test binary (link time on 2 cores), one module per area.
//! Every test gets its own database and Redis key prefix (see `support`).

mod fixtures;
mod support;

mod account;
mod analytics;
mod background;
mod bulk;
mod caching;
mod campaigns;
mod conventions;
mod ctl_config;
mod docs;
mod exactly_once;
mod geoip;
mod hardening;
mod harness;
mod link_rules;
mod links;
mod offline_queries;
mod ops;
mod pipeline;
mod primary_restart;
mod processes;
mod redirect;
mod redis_cluster;
mod replica;
mod resilience;
mod setup;
mod shards;
mod takeover;
mod units;
mod webhooks;
