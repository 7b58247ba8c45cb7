//! The `chorus` binary: `serve` (default), `migrate`, `token`, `check-config` (PROTOCOL.md §1).
//! Thin on purpose: parse the CLI, load settings, start telemetry, hand over to the library.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chorus::auth::Auth;
use chorus::config::{Settings, find_config_dir};
use chorus::node::Node;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chorus",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CHORUS_COMMIT"), ")"),
    about = "Realtime chat node: WebSocket, REST, durable ordered history"
)]
struct Cli {
    /// Folder with default.toml and $CHORUS_ENV.toml (default: ./config, else built-in defaults).
    #[arg(long, global = true)]
    config_dir: Option<PathBuf>,
    /// Override any key, e.g. --set limits.burst=80 (repeatable; applied last).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Shortcut for --set http.bind=ADDR.
    #[arg(long, global = true)]
    bind: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print a signed JWT using the configured secret.
    Token {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
        /// Comma list of room patterns ('*' only trailing), e.g. 'a,team-*'. Absent = all rooms.
        #[arg(long)]
        rooms: Option<String>,
        /// `service` (backends: may post to and read any room) or `moderator`.
        #[arg(long)]
        role: Option<String>,
    },
    /// Load and validate the configuration, print it with secrets masked.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut overrides = Vec::new();
    for pair in &cli.set {
        match pair.split_once('=') {
            Some((k, v)) => overrides.push((k.trim().to_owned(), v.trim().to_owned())),
            None => {
                eprintln!("--set expects KEY=VALUE, got `{pair}`");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(bind) = &cli.bind {
        overrides.push(("http.bind".into(), bind.clone()));
    }
    for warning in chorus::config::env_typos(&env) {
        eprintln!("warning: {warning}");
    }
    let dir = find_config_dir(cli.config_dir.as_deref());
    let settings = match Settings::load(dir.as_deref(), &env, &overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            eprintln!("offending key: {}", e.key);
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    // Everything but `migrate` and `token` (which checks for itself) needs the signing secret.
    if matches!(command, Command::Serve | Command::CheckConfig)
        && let Err(e) = settings.validate_secret()
    {
        eprintln!("invalid configuration: {e}");
        eprintln!("offending key: {}", e.key);
        return ExitCode::FAILURE;
    }
    let result = match command {
        Command::CheckConfig => {
            print!("{}", settings.masked());
            Ok(())
        }
        Command::Token {
            user,
            name,
            ttl,
            rooms,
            role,
        } => token(&settings, &user, name, ttl.into(), rooms, role),
        Command::Migrate => migrate(&settings),
        Command::Serve => serve(settings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Roles a token may carry: `service` (backends: any room), `moderator` (PROTOCOL §2, v2).
const ROLES: [&str; 2] = ["service", "moderator"];

fn token(
    settings: &Settings,
    user: &str,
    name: Option<String>,
    ttl: Duration,
    rooms: Option<String>,
    role: Option<String>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !settings.auth.jwt_secret.is_empty(),
        "auth.jwt_secret is empty. A standalone node makes a new random secret every run, so only it can \
         sign its tokens: its banner prints one, and POST /api/demo/login {{\"name\":\"bob\"}} gives one \
         for any name. For tokens from this command, set CHORUS__AUTH__JWT_SECRET here and on the node."
    );
    anyhow::ensure!(
        chorus::ids::valid_user_id(user),
        "--user must be 1-128 characters"
    );
    if let Some(role) = &role {
        anyhow::ensure!(
            ROLES.contains(&role.as_str()),
            "--role `{role}` is not one of: {}",
            ROLES.join(", ")
        );
    }
    if let Some(rooms) = &rooms {
        for pattern in rooms.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let base = pattern.strip_suffix('*').unwrap_or(pattern);
            anyhow::ensure!(
                base.is_empty() || chorus::ids::RoomId::parse(base).is_some(),
                "--rooms: `{pattern}` is not a room pattern (room ids are [A-Za-z0-9_.:-], \
                 with `*` only at the end)"
            );
        }
    }
    let rooms = rooms.map(|r| {
        r.split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect()
    });
    let auth = Auth::new(settings.auth.jwt_secret.as_bytes(), &settings.auth);
    println!(
        "{}",
        auth.issue(user, name.as_deref(), ttl, rooms, role.as_deref())
    );
    Ok(())
}

fn migrate(settings: &Settings) -> anyhow::Result<()> {
    anyhow::ensure!(
        !settings.database.url.is_empty(),
        "database.url is empty: nothing to migrate"
    );
    chorus::telemetry::init(&settings.log, &settings.node.id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let applied = rt.block_on(chorus::store::migrate::run(&settings.database.url))?;
    println!("migrations applied: {applied}");
    Ok(())
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    chorus::telemetry::init(&settings.log, &settings.node.id);
    let drain = settings.shutdown.drain;
    actix_web::rt::System::new().block_on(async move {
        // Before anything is logged: a SIGTERM that arrives while the node starts (right after
        // `listening`, say) must drain it, not kill it with the default action.
        let mut signals = Signals::new()?;
        let node = Node::start(settings).await.context("starting the node")?;
        if let Some(token) = &node.demo_token {
            print_standalone_banner(&node, token);
        } else if node.shared.store.backend() == "memory" {
            tracing::warn!(
                "in-memory store: messages are NOT durable (set database.url for Postgres)"
            );
        }
        signals.until_stop(&node).await;
        tracing::info!("signal received: draining (a second Ctrl-C exits at once)");
        tokio::select! {
            () = node.drain(drain) => {}
            () = signals.stop() => {
                tracing::warn!("second signal: exiting without finishing the drain");
                std::process::exit(130);
            }
        }
        node.stop().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// SIGTERM and SIGINT stop the node (drain); SIGHUP re-reads the TLS certificate.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        })
    }

    /// The next SIGTERM or SIGINT.
    async fn stop(&mut self) {
        tokio::select! { _ = self.term.recv() => {}, _ = self.int.recv() => {} }
    }

    /// Serves SIGHUPs (certificate reloads) until a stop signal.
    async fn until_stop(&mut self, node: &Node) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => match node.reload_tls() {
                    Some(Ok(())) => {} // logged with what it serves now
                    Some(Err(e)) => tracing::error!(error = %e,
                        "SIGHUP: TLS certificate NOT reloaded; still serving the previous one"),
                    None => tracing::info!("SIGHUP: nothing to reload (no http.tls_cert)"),
                },
            }
        }
    }
}

fn print_standalone_banner(node: &Node, token: &str) {
    tracing::warn!(
        "standalone mode: in-memory store, messages are NOT durable; a random JWT secret was made for this run"
    );
    let addr = node.addr;
    println!(
        "\nChorus is running in standalone mode (in-memory store: NOT durable, single node).\n\
         \n  Demo token (user \"demo\", valid 24 h; a new secret every run):\n  {token}\n\
         \n  Connect with a stock client:\n    websocat \"ws://{addr}/ws?access_token={token}\"\n\
         \x20   then type: {{\"type\":\"join\",\"room\":\"lobby\"}}\n\
         \x20              {{\"type\":\"send\",\"room\":\"lobby\",\"body\":\"hello\"}}\n\
         \n  Or REST:\n    curl -H \"Authorization: Bearer {token}\" -H 'content-type: application/json' \\\n\
         \x20        -d '{{\"body\":\"hello\"}}' http://{addr}/api/rooms/lobby/messages\n\
         \n  Two people chatting: open http://{addr} in two browser tabs and sign in with two names.\n\
         \x20 A token for another user (any name), from this node:\n\
         \x20   curl -H 'content-type: application/json' -d '{{\"name\":\"bob\"}}' http://{addr}/api/demo/login\n"
    );
}
