//! A federation driven round by round through fedsentry's public API only — the calls a
//! Flower server (configure, aggregate, evaluate) and its clients (fit) make across processes.
//!
//! ```text
//! cargo run --release --example drive_rounds -- EXPERIMENT.toml OUT_DIR [--only LABEL]… [--data-root DIR]
//! ```
//!
//! Writes `OUT_DIR/rounds.csv`: per round the clients that trained, their mean training loss,
//! the server's test loss, accuracy and ASR, the privacy spent and the clients excluded so far.
//! `fedsentry run` on the same file and cell writes the same numbers to its `history.csv`, bit
//! for bit (`tests/drive_rounds.rs` checks it).

use fedsentry::federated::RoundPlan;
use fedsentry::{Error, Result, config, study};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Serialize)]
struct Round {
    round: usize,
    clients_fit: usize,
    train_loss: f64,
    test_loss: f64,
    test_accuracy: f64,
    asr: Option<f64>,
    epsilon: Option<f64>,
    excluded: String,
}

struct Args {
    experiment: PathBuf,
    out: PathBuf,
    only: Vec<String>,
    data_root: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let usage = || {
        Error::Invalid(
            "usage: drive_rounds EXPERIMENT.toml OUT_DIR [--only LABEL]… [--data-root DIR]".into(),
        )
    };
    let mut it = std::env::args().skip(1);
    let experiment = it.next().ok_or_else(usage)?.into();
    let out = it.next().ok_or_else(usage)?.into();
    let (mut only, mut data_root) = (Vec::new(), None);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(usage)?;
        match flag.as_str() {
            "--only" => only.push(value),
            "--data-root" => data_root = Some(value.into()),
            _ => return Err(usage()),
        }
    }
    Ok(Args {
        experiment,
        out,
        only,
        data_root,
    })
}

fn main() {
    // The CPU kernels `fedsentry` uses (portable unless $FEDSENTRY_CPU_KERNELS says otherwise),
    // pinned before libtorch runs anything: the same kernels give the same numbers.
    let kernels = fedsentry::numerics::CpuKernels::from_env().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    // SAFETY: no other thread runs yet and libtorch has not dispatched anything.
    unsafe { fedsentry::numerics::pin(kernels) };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = args()?;
    let cells = config::select(
        config::load(&args.experiment)?,
        &args.only,
        &args.experiment,
    )?;
    let [cell] = cells.as_slice() else {
        return Err(Error::Invalid(format!(
            "{} cells match; choose one with --only",
            cells.len()
        )));
    };
    let opts = study::RunOptions {
        out: args.out.clone(),
        data_root: args.data_root,
        force: false,
        jobs: 1,
        ..Default::default()
    };
    let setup = study::federation_of(cell, &mut study::Context::default(), &opts)?;
    let fed = &setup.federation;
    let mut global = fed.initial_params().to_vec();
    let mut rows = Vec::new();
    for round in 1..=fed.config().rounds {
        // Server: who trains, with what round configuration.
        let RoundPlan {
            clients, config, ..
        } = fed.configure(round);
        if let Some(why) = &config.stop {
            println!("stopped before round {round}: {why}");
            break;
        }
        // Clients: local training from the global parameters.
        let (mut updates, mut loss_sum, mut examples) = (Vec::new(), 0.0, 0usize);
        for &id in &clients {
            let fit = fed.fit(id, &global, round, &config)?;
            loss_sum += fit.train_loss * fit.update.num_examples as f64;
            examples += fit.update.num_examples;
            updates.push(fit.update);
        }
        // Malicious clients rewrite their updates (when the experiment says they do).
        fed.poison_updates(round, &global, &mut updates);
        // Server: aggregate, then evaluate the new global model.
        let agg = fed.aggregate(round, &global, updates, &config)?;
        global = agg.params;
        let eval = fed.evaluate(&global)?;
        let excluded = fed.excluded();
        println!(
            "round {round}: {} clients, {} accepted, {} flagged; test acc {:.2}%{}",
            clients.len(),
            agg.accepted.len(),
            agg.flags.len(),
            100.0 * eval.accuracy,
            eval.asr
                .map(|a| format!(", ASR {:.2}%", 100.0 * a))
                .unwrap_or_default()
        );
        rows.push(Round {
            round,
            clients_fit: clients.len(),
            train_loss: loss_sum / examples.max(1) as f64,
            test_loss: eval.loss,
            test_accuracy: eval.accuracy,
            asr: eval.asr,
            epsilon: fed.epsilon(),
            excluded: excluded
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        });
    }
    let path = args.out.join("rounds.csv");
    fedsentry::io::write_rows(&path, &rows)?;
    println!("rounds: {}", path.display());
    Ok(())
}
