//! `genesys-sim serve --scenario <name|file> [--port 0] [--seed N]`

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "genesys-sim",
    version,
    about = "Local twin of the Genesys Cloud quality-management API"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve a scenario on 127.0.0.1 until Ctrl-C.
    Serve {
        /// Built-in scenario (demo, bench, test, pessimistic) or a .toml/.json file.
        #[arg(long, default_value = "demo")]
        scenario: String,
        /// TCP port on 127.0.0.1 (0 = any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Override the scenario seed.
        #[arg(long)]
        seed: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let Cli {
        cmd: Cmd::Serve {
            scenario,
            port,
            seed,
        },
    } = Cli::parse();
    let mut sc = genesys_sim::Scenario::load(&scenario)?;
    if let Some(s) = seed {
        sc.seed = s;
    }
    let sim = genesys_sim::start_on(sc, SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let (from, to) = sim.period();
    println!(
        "genesys-sim serving scenario {:?} at {}",
        sim.scenario().name,
        sim.base_url()
    );
    println!("data period: {from} .. {to} (UTC)");
    println!("stats: {}/_sim/stats", sim.base_url());
    for o in sim.orgs() {
        println!();
        println!("org {} ({})", o.name, o.org_id);
        println!("  region:        {}", o.region);
        println!("  api base url:  {}", o.api_base_url);
        println!("  login base:    {}", o.login_base_url);
        println!("  client id:     {}", o.client_id);
        println!("  client secret: {}", o.client_secret);
        println!(
            "  limit:         {} requests / {} ms per token; {} evaluations",
            o.token_limit.allowed, o.token_limit.window_ms, o.evaluation_count
        );
    }
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}
