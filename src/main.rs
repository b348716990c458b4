//! The `fedsentry` command line: a thin layer over the library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use fedsentry::config;
use fedsentry::numerics;
use fedsentry::report::paper_vs_measured;
use fedsentry::study::{self, RunOptions};
use std::path::PathBuf;

/// The shipped centralized study, built in so `fedsentry demo` runs from anywhere.
const DEMO_CONFIG: &str = include_str!("../configs/thesis_centralized.toml");

#[derive(Parser)]
#[command(
    name = "fedsentry",
    version,
    about = "Security testbed for medical-image deep learning"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU kernels: `portable` pins libtorch, oneDNN and MKL to AVX2 code paths, so a seed
    /// gives the same numbers on every x86-64 CPU with AVX2; `native` lets them use the best
    /// the CPU has (faster, but the numbers depend on the CPU) [default: portable, or
    /// $FEDSENTRY_CPU_KERNELS].
    #[arg(long, global = true, value_name = "portable|native")]
    cpu_kernels: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment file (every cell of its grid).
    Run {
        experiment: PathBuf,
        /// Output folder [default: runs/<experiment name>].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Folder that relative data paths are resolved against (e.g. ../shared/data).
        #[arg(long)]
        data_root: Option<PathBuf>,
        /// Recompute cells, baselines and backbones even when finished results exist.
        #[arg(long)]
        force: bool,
        /// Run only the grid cells whose folder name has this `key=value` part, e.g.
        /// `--only partition=iid` (repeat to narrow further).
        #[arg(long, value_name = "KEY=VALUE")]
        only: Vec<String>,
        /// Clients trained at once in federated runs (default: one per CPU core, shared out
        /// between the --jobs); results do not depend on it.
        #[arg(long)]
        workers: Option<usize>,
        /// Grid cells run at once, each on its share of the CPU cores (memory grows with it);
        /// results do not depend on it.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Run only every N-th cell, starting with the K-th (1-based), e.g. one process of a
        /// Slurm job array or GNU parallel; the shards share --out and `collect` builds the
        /// sweep's tables once all have run.
        #[arg(long, value_name = "K/N")]
        shard: Option<config::Shard>,
    },
    /// Build a sweep's results table, paper vs measured, record and report from the cells
    /// that finished (e.g. by `run --shard K/N` processes sharing one output folder); fails,
    /// after writing, when cells have no result yet.
    Collect {
        experiment: PathBuf,
        /// Output folder [default: runs/<experiment name>].
        #[arg(long)]
        out: Option<PathBuf>,
        /// As given to `run` (the cells' data paths and fingerprints depend on it).
        #[arg(long)]
        data_root: Option<PathBuf>,
        #[arg(long, value_name = "KEY=VALUE")]
        only: Vec<String>,
    },
    /// Run the shipped centralized backdoor study (configs/thesis_centralized.toml) on the
    /// built-in synthetic MRI data and print model × strategy → clean accuracy, CAD, ASR.
    Demo {
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Train the trusted backbone of an experiment's `[pretrain]` table and save it.
    Pretrain {
        experiment: PathBuf,
        /// Output weights file (.safetensors).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        data_root: Option<PathBuf>,
        /// The grid cell whose `[pretrain]` to use, as in `run --only` (default: the first).
        #[arg(long)]
        only: Vec<String>,
    },
    /// Write <out>/report.html for a run folder: one self-contained page (figures inlined)
    /// with the results, paper vs measured, the sweep's figures and tables, and every cell's
    /// curves, overlays, configuration and command; cells that failed or never ran are listed.
    /// `run` and `demo` write it at their end; this rewrites it (and the PNG copies of the
    /// figures) for any run folder.
    Report { out: PathBuf },
    /// Dataset utilities.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Summarize a dataset (an image folder or a MedMNIST-style .npz): classes, images per class
    /// and split, image sizes and colour, unreadable files, duplicates within and across splits.
    Inspect {
        path: PathBuf,
        /// Also write the summary as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Write the synthetic MRI phantoms as an image folder (<out>/Training|Testing/<class>/*.png).
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 500)]
        train_per_class: usize,
        #[arg(long, default_value_t = 150)]
        test_per_class: usize,
    },
    /// Download a MedMNIST 2D set (28×28 .npz) and verify its MD5; an interrupted download
    /// resumes where it stopped when the command runs again.
    Fetch {
        /// The set, e.g. pneumoniamnist, breastmnist, pathmnist (`--list` names them all).
        #[arg(required_unless_present = "list")]
        flag: Option<String>,
        /// Folder the file is written to (as <out>/<flag>.npz).
        #[arg(long, default_value = "data")]
        out: PathBuf,
        /// Where <flag>.npz is downloaded from (a mirror of the official record).
        #[arg(long, default_value = fedsentry::data::medmnist::BASE_URL)]
        base_url: String,
        /// Expected MD5 when the mirror holds another release than the official one.
        #[arg(long)]
        md5: Option<String>,
        /// List the sets with their sizes and licenses.
        #[arg(long)]
        list: bool,
        /// Give up (keeping the partial file, to resume later) when no byte arrives for this
        /// many seconds.
        #[arg(long, default_value_t = fedsentry::data::fetch::STALL.as_secs_f64(), value_name = "SECONDS")]
        stall_timeout: f64,
    },
}

/// `fedsentry data fetch`: one MedMNIST file, with a byte progress bar.
fn fetch(
    flag: &str,
    out: &std::path::Path,
    base_url: &str,
    md5: Option<&str>,
    stall: std::time::Duration,
) -> Result<()> {
    use fedsentry::data::{fetch, medmnist};
    let set = medmnist::lookup(flag)?;
    let md5 = md5.unwrap_or(set.md5);
    let dest = out.join(set.file_name());
    let url = set.url(base_url);
    let pb = fedsentry::progress::bytes_bar(set.file_name());
    let result = fetch::download_with(&url, &dest, md5, stall, &mut |done, total| {
        if let Some(t) = total {
            pb.set_length(t);
        }
        pb.set_position(done);
    });
    pb.finish_and_clear();
    match result? {
        fetch::Fetched::AlreadyPresent => {
            println!("{} is already here (MD5 {md5} verified)", dest.display())
        }
        fetch::Fetched::Downloaded {
            bytes,
            resumed_from,
        } => {
            let resumed = if resumed_from > 0 {
                format!(", resumed after {resumed_from}")
            } else {
                String::new()
            };
            println!(
                "{}: {bytes} bytes{resumed}, MD5 {md5} verified ({}, {})",
                dest.display(),
                set.license,
                url
            );
        }
    }
    Ok(())
}

/// The command line as typed, for the sweep's record.
fn command_line() -> String {
    std::env::args()
        .map(|a| fedsentry::report::manifest::shell_word(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the cells, prints the tables and writes the report — also when a cell fails, so the
/// page shows what finished and what did not.
fn run_and_print(
    cells: &[config::Cell],
    references: &[paper_vs_measured::Reference],
    opts: &RunOptions,
) -> Result<()> {
    let result = run_and_print_tables(cells, references, opts);
    if let Some(shard) = &opts.shard {
        // A shard's report would show a part of the grid; `collect` writes the whole one.
        println!(
            "shard {}/{} done: after every shard, `fedsentry collect` builds the sweep's tables and report",
            shard.k, shard.n
        );
        return result;
    }
    match (fedsentry::report::page::write(&opts.out), &result) {
        (Ok(page), _) => println!("report: {}", page.display()),
        (Err(e), Ok(())) => return Err(e.into()),
        // The run's own error is the one to report.
        (Err(e), Err(_)) => eprintln!("error: the report could not be written either: {e}"),
    }
    result
}

fn run_and_print_tables(
    cells: &[config::Cell],
    references: &[paper_vs_measured::Reference],
    opts: &RunOptions,
) -> Result<()> {
    let summaries = study::run_cells(cells, opts)?;
    print_tables(&summaries, references, &opts.sweep_dir())
}

/// The results table, paper vs measured and mean ± std, printed and written to `out`.
fn print_tables(
    summaries: &[fedsentry::report::summary::Summary],
    references: &[paper_vs_measured::Reference],
    out: &std::path::Path,
) -> Result<()> {
    println!("{}", fedsentry::report::results::results_table(summaries));
    let rows = paper_vs_measured::write(out, references, summaries)?;
    if !rows.is_empty() {
        println!(
            "\nPaper vs measured:\n{}\npaper vs measured: {}",
            paper_vs_measured::table(&rows),
            out.join("paper_vs_measured.csv").display()
        );
    }
    let settings = fedsentry::report::repetitions::settings(summaries);
    if fedsentry::report::repetitions::repeated(&settings) {
        println!(
            "\nMean ± std over seeds:\n{}",
            fedsentry::report::repetitions::table(&settings)
        );
        println!("mean ± std: {}", out.join("mean_std.csv").display());
    }
    println!("\nresults: {}", out.join("results.csv").display());
    Ok(())
}

/// `fedsentry collect`: the sweep's tables, record and report from the cells every shard
/// finished; an error names the cells still without a result (after writing what there is).
fn collect(
    cells: &[config::Cell],
    references: &[paper_vs_measured::Reference],
    opts: &RunOptions,
) -> Result<()> {
    use fedsentry::report::manifest::{CellStatus, Manifest};
    let (done, missing) = study::collect(cells, opts);
    let ids: Vec<String> = cells
        .iter()
        .map(|c| c.resolved(opts.data_root.as_deref()).id())
        .collect();
    let name = cells
        .first()
        .map(|c| c.experiment.name.clone())
        .unwrap_or_default();
    let mut record = Manifest::new(&name, opts.command.clone(), opts.experiment.clone(), &ids);
    for s in &done {
        if let Some(i) = ids.iter().position(|id| *id == s.cell) {
            record.set(i, CellStatus::Finished, Some(s.elapsed_s), None);
        }
    }
    record.write(&opts.out)?;
    if !done.is_empty() {
        let elapsed: f64 = done.iter().map(|s| s.elapsed_s).sum();
        fedsentry::report::results::write_results(&opts.out, &done, elapsed)?;
        print_tables(&done, references, &opts.out)?;
    }
    let page = fedsentry::report::page::write(&opts.out)?;
    println!("report: {}", page.display());
    anyhow::ensure!(
        missing.is_empty(),
        "{} of {} cells have no finished result in {}: {} (run their shard again, then collect)",
        missing.len(),
        ids.len(),
        opts.out.display(),
        missing.join(", ")
    );
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let chosen = cli
        .cpu_kernels
        .clone()
        .or_else(|| std::env::var(numerics::ENV).ok());
    let kernels = match chosen
        .as_deref()
        .map(|s| (s, numerics::CpuKernels::parse(s)))
    {
        None => numerics::CpuKernels::default(),
        Some((_, Some(k))) => k,
        Some((bad, None)) => {
            eprintln!(
                "error: --cpu-kernels (or ${}) must be `portable` or `native`, got `{bad}`",
                numerics::ENV
            );
            std::process::exit(2);
        }
    };
    // SAFETY: no other thread runs yet and libtorch has not dispatched anything.
    unsafe { numerics::pin(kernels) };
    if let Err(e) = dispatch(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The options of a sweep over an experiment file's cells: its output folder (by default
/// `runs/<experiment name>`), data root, and the command and file it records.
fn sweep_options(
    cells: &[config::Cell],
    out: Option<PathBuf>,
    data_root: Option<PathBuf>,
    experiment: &std::path::Path,
) -> RunOptions {
    let name = cells
        .first()
        .map(|c| c.experiment.name.clone())
        .unwrap_or_default();
    RunOptions {
        out: out.unwrap_or_else(|| PathBuf::from("runs").join(name)),
        data_root,
        command: Some(command_line()),
        experiment: Some(experiment.to_path_buf()),
        ..Default::default()
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            experiment,
            out,
            data_root,
            force,
            only,
            workers,
            jobs,
            shard,
        } => {
            anyhow::ensure!(jobs > 0, "--jobs must be at least 1");
            let cells = config::load(&experiment)?;
            let total = cells.len();
            let mut cells = config::select(cells, &only, &experiment)?;
            if let Some(s) = &shard {
                cells = s.select(cells);
                anyhow::ensure!(
                    !cells.is_empty(),
                    "--shard {}/{}: the grid has fewer cells than shards, this one has none",
                    s.k,
                    s.n
                );
            }
            if cells.len() < total {
                eprintln!("running {} of {total} cells", cells.len());
            }
            if let Some(w) = workers {
                config::set_workers(&mut cells, w)?;
            }
            let opts = RunOptions {
                force,
                jobs,
                shard,
                ..sweep_options(&cells, out, data_root, &experiment)
            };
            let references = paper_vs_measured::load(&experiment)?;
            run_and_print(&cells, &references, &opts)
        }
        Command::Collect {
            experiment,
            out,
            data_root,
            only,
        } => {
            let cells = config::select(config::load(&experiment)?, &only, &experiment)?;
            let opts = sweep_options(&cells, out, data_root, &experiment);
            let references = paper_vs_measured::load(&experiment)?;
            collect(&cells, &references, &opts)
        }
        Command::Demo { out, force } => {
            let cells = config::parse(DEMO_CONFIG, "configs/thesis_centralized.toml")?;
            let opts = RunOptions {
                out,
                data_root: None,
                force,
                jobs: 1,
                command: Some(command_line()),
                experiment: Some(PathBuf::from("configs/thesis_centralized.toml")),
                shard: None,
            };
            let references =
                paper_vs_measured::parse(DEMO_CONFIG, "configs/thesis_centralized.toml")?;
            run_and_print(&cells, &references, &opts)
        }
        Command::Pretrain {
            experiment,
            out,
            data_root,
            only,
        } => {
            let cells = config::select(config::load(&experiment)?, &only, &experiment)?;
            let cell = cells
                .first()
                .context("the experiment file has no runs")?
                .resolved(data_root.as_deref());
            let opts = RunOptions {
                out: out.parent().map(PathBuf::from).unwrap_or_default(),
                data_root,
                force: true,
                jobs: 1,
                ..Default::default()
            };
            let mut ctx = study::Context::default();
            study::pretrain(&cell.experiment, &mut ctx, &opts, &out)?;
            Ok(())
        }
        Command::Report { out } => {
            let page = fedsentry::report::page::write(&out)?;
            println!("report: {}", page.display());
            Ok(())
        }
        Command::Data { command } => match command {
            DataCommand::Synth {
                out,
                seed,
                size,
                train_per_class,
                test_per_class,
            } => {
                let ds = fedsentry::data::synthetic::generate(
                    &fedsentry::data::synthetic::PhantomConfig {
                        seed,
                        size,
                        train_per_class,
                        test_per_class,
                        ..Default::default()
                    },
                );
                let n =
                    fedsentry::data::synthetic::write_image_folder(&ds.train, &out, "Training")?
                        + fedsentry::data::synthetic::write_image_folder(
                            &ds.test, &out, "Testing",
                        )?;
                let preview = out.join("preview.png");
                fedsentry::data::synthetic::write_preview(&ds.test, 8, 2, &preview)?;
                println!(
                    "wrote {n} images under {} (contact sheet: {})",
                    out.display(),
                    preview.display()
                );
                Ok(())
            }
            DataCommand::Fetch {
                flag,
                out,
                base_url,
                md5,
                list,
                stall_timeout,
            } => {
                if list {
                    println!("{}", fedsentry::data::medmnist::table());
                    return Ok(());
                }
                let flag = flag.expect("clap requires it without --list");
                anyhow::ensure!(
                    stall_timeout.is_finite() && stall_timeout > 0.0,
                    "--stall-timeout must be a positive number of seconds, got {stall_timeout}"
                );
                let stall = std::time::Duration::from_secs_f64(stall_timeout);
                fetch(&flag, &out, &base_url, md5.as_deref(), stall)
            }
        },
        Command::Inspect { path, json } => {
            let summary = fedsentry::data::inspect::inspect(&path)?;
            print!("{}", summary.render());
            if let Some(j) = json {
                fedsentry::io::write_json(&j, &summary)?;
                println!("\nsummary: {}", j.display());
            }
            Ok(())
        }
    }
}
