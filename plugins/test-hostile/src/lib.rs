//! A deliberately hostile mapper, compiled into the host's tests to prove the sandbox holds:
//! the `Mode` field of the input picks the misbehaviour (no `Mode`: the record comes back
//! unchanged). Never shipped as a default plugin.
//!
//! For end-to-end tests through real servers, where a record can't carry a `Mode` field, a
//! Siebel contact whose `Last Name` is `hostile-<mode>` misbehaves the same way, and every
//! other record without `Mode` goes through the real business-contact mapping, so one user's
//! poisoned record can be watched next to other users syncing normally.

use tandem_plugin_api::{Context, Fields, Mapper, PluginError, Value, export_mapper};

/// The plugin.
pub struct Hostile;

impl Mapper for Hostile {
    fn to_exchange(ctx: &Context, siebel: Fields) -> Result<Fields, PluginError> {
        match poisoned_mode(&siebel, "Last Name") {
            Some(mode) => misbehave(ctx, &mode, siebel),
            None if siebel.contains("Mode") => misbehave_as_asked(ctx, siebel),
            None => Ok(contact_mapping::siebel_to_exchange(&siebel)),
        }
    }

    fn to_siebel(ctx: &Context, exchange: Fields) -> Result<Fields, PluginError> {
        match poisoned_mode(&exchange, "Surname") {
            Some(mode) => misbehave(ctx, &mode, exchange),
            None if exchange.contains("Mode") => misbehave_as_asked(ctx, exchange),
            None => Ok(contact_mapping::exchange_to_siebel(&exchange)),
        }
    }
}

/// The mode a `hostile-<mode>` surname asks for.
fn poisoned_mode(record: &Fields, surname_field: &str) -> Option<String> {
    let surname = record.get_text(surname_field)?;
    surname.strip_prefix("hostile-").map(str::to_owned)
}

fn misbehave_as_asked(ctx: &Context, record: Fields) -> Result<Fields, PluginError> {
    let mode = record.get_text("Mode").unwrap_or("echo").to_owned();
    misbehave(ctx, &mode, record)
}

fn misbehave(ctx: &Context, mode: &str, mut record: Fields) -> Result<Fields, PluginError> {
    match mode {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        "trap" => panic!("asked to trap"),
        "sleep" => {
            // Blocks in a WASI host call, where epoch interruption can't reach.
            std::thread::sleep(std::time::Duration::from_secs(10));
            Ok(record)
        }
        "env" => {
            record.set("Vars", std::env::vars().count() as i64);
            record.set("Args", std::env::args().count() as i64);
            record.set(
                "Cwd",
                Value::from(
                    std::env::current_dir()
                        .ok()
                        .map(|d| d.display().to_string()),
                ),
            );
            record.set("Files", std::fs::read_dir("/").is_ok());
            record.set("Net", std::net::TcpStream::connect("127.0.0.1:1").is_ok());
            Ok(record)
        }
        "recurse" => {
            let depth = recurse(std::hint::black_box(u64::MAX));
            record.set("Depth", depth as i64);
            Ok(record)
        }
        "spam" => {
            for i in 0..10_000 {
                tandem_plugin_api::warn!("spam line {i}");
            }
            Ok(record)
        }
        "error" => Err(PluginError::InvalidRecord("asked to fail".into())),
        "host" => {
            tandem_plugin_api::info!("hello from {} for {}", ctx.domain, ctx.user);
            let greeting = tandem_plugin_api::config("greeting");
            record.set("Greeting", Value::from(greeting));
            record.set("Domain", ctx.domain.as_str());
            record.set("User", ctx.user.as_str());
            Ok(record)
        }
        _ => Ok(record),
    }
}

fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let pad = std::hint::black_box([n; 16]);
    1 + recurse(std::hint::black_box(n - 1)) + pad[3] % 2
}

export_mapper!(Hostile);
