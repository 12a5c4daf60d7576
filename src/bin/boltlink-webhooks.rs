//! `boltlink-webhooks`: everything lives in [`boltlink::pipeline::process_main`] and
//! [`boltlink::webhooks`].

fn main() -> std::process::ExitCode {
    boltlink::config::daemon_command_line(
        "boltlink-webhooks",
        "BoltLink webhook sender: link events and click batches to each key's webhook URL, signed, at least once",
    );
    boltlink::pipeline::process_main(boltlink::pipeline::Process::Webhooks).into()
}
