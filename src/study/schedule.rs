//! Running the cells of an experiment: one after another or several at once (`--jobs`), the
//! results table rewritten after every finished cell.

use super::*;
use crate::report::manifest::{CellStatus, Manifest};

/// Runs every cell of an experiment file; writes `<out>/summary.json` and `<out>/results.csv`.
pub fn run_file(path: &Path, opts: &RunOptions) -> Result<Vec<Summary>> {
    let cells = config::load(path)?;
    run_cells(&cells, opts)
}

pub fn run_cells(cells: &[Cell], opts: &RunOptions) -> Result<Vec<Summary>> {
    let start = Instant::now();
    let n = crate::numerics::current();
    progress::status(format!(
        "CPU kernels: {} (ATen {}, oneDNN {}, MKL {})",
        n.cpu_kernels.label(),
        n.aten_cpu_capability
            .as_deref()
            .unwrap_or("chosen by the CPU"),
        n.onednn_max_cpu_isa
            .as_deref()
            .unwrap_or("chosen by the CPU"),
        n.mkl_cbwr.as_deref().unwrap_or("chosen by the CPU"),
    ));
    let mut ctx = Context::default();
    let cells: Vec<Cell> = cells
        .iter()
        .map(|c| c.resolved(opts.data_root.as_deref()))
        .collect();
    let labels: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| format!("[{}/{}] {}", i + 1, cells.len(), c.id()))
        .collect();
    let tracker = Tracker::new(&cells, opts)?;
    let jobs = opts.jobs.clamp(1, cells.len().max(1));
    if jobs == 1 {
        let mut done = Vec::with_capacity(cells.len());
        for (i, (cell, label)) in cells.iter().zip(&labels).enumerate() {
            let s = tracker.run(i, cell, opts, || run_cell(cell, &mut ctx, opts, label))?;
            progress::status(format!("{label}: {}", one_line(&s)));
            done.push(s);
            // Keep the tables current so an interrupted grid leaves its finished rows behind.
            write_results(&opts.sweep_dir(), &done, start.elapsed().as_secs_f64())?;
            tracker.report_progress();
        }
        return Ok(done);
    }
    // What cells share is made first, one at a time, so no two cells train the same backbone
    // or baseline.
    for (i, (cell, label)) in cells.iter().zip(&labels).enumerate() {
        if finished_earlier(cell, opts).is_none() {
            tracker.guard(i, prepare(cell, &mut ctx, opts, label))?;
        }
    }
    run_in_parallel(&cells, &labels, &ctx, opts, jobs, start, &tracker)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps `<out>/sweep.json` and the sweep's progress line current as cells start, finish
/// and fail.
struct Tracker {
    manifest: std::sync::Mutex<Manifest>,
    /// The manifest's entry of each of this invocation's cells.
    index: Vec<usize>,
    out: PathBuf,
    start: Instant,
    bar: indicatif::ProgressBar,
}

impl Tracker {
    fn new(cells: &[Cell], opts: &RunOptions) -> Result<Self> {
        let ids: Vec<String> = cells.iter().map(Cell::id).collect();
        let name = cells
            .first()
            .map(|c| c.experiment.name.clone())
            .unwrap_or_default();
        let mut manifest =
            Manifest::new(&name, opts.command.clone(), opts.experiment.clone(), &ids);
        // An earlier record of the same experiment in this folder (another `--only` part):
        // keep its cells so the report lists the whole grid. A record that no longer parses
        // is replaced.
        let index = match Manifest::read(&opts.sweep_dir()) {
            Ok(Some(earlier)) if earlier.name == name => manifest.keep_earlier(earlier),
            _ => (0..ids.len()).collect(),
        };
        manifest.write(&opts.sweep_dir())?;
        Ok(Tracker {
            manifest: std::sync::Mutex::new(manifest),
            index,
            out: opts.sweep_dir(),
            start: Instant::now(),
            bar: progress::sweep_bar(cells.len() as u64),
        })
    }

    fn set(
        &self,
        i: usize,
        status: CellStatus,
        seconds: Option<f64>,
        error: Option<String>,
    ) -> Result<()> {
        let mut m = lock(&self.manifest);
        m.set(self.index[i], status, seconds, error);
        m.write(&self.out)
    }

    /// Records a failure of cell `i` (keeping the error for the caller).
    fn guard<T>(&self, i: usize, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            // The cell's error is the one to report; a failed manifest write would hide it.
            let _ = self.set(i, CellStatus::Failed, None, Some(e.to_string()));
        }
        r
    }

    /// Runs cell `i` with `f`, recording its start, its end (finished or reused) or its error.
    fn run(
        &self,
        i: usize,
        cell: &Cell,
        opts: &RunOptions,
        f: impl FnOnce() -> Result<Summary>,
    ) -> Result<Summary> {
        let reused = finished_earlier(cell, opts).is_some();
        self.set(i, CellStatus::Running, None, None)?;
        let t = Instant::now();
        let s = self.guard(i, f())?;
        let status = if reused {
            CellStatus::Reused
        } else {
            CellStatus::Finished
        };
        self.set(i, status, Some(t.elapsed().as_secs_f64()), None)?;
        Ok(s)
    }

    /// Prints cells done / total and the estimated time left.
    fn report_progress(&self) {
        let m = lock(&self.manifest);
        let count = |s: CellStatus| {
            self.index
                .iter()
                .filter(|&&i| m.cells[i].status == s)
                .count()
        };
        let reused = count(CellStatus::Reused);
        let done = count(CellStatus::Finished) + reused;
        let total = self.index.len();
        let line = progress::sweep_line(done, reused, total, self.start.elapsed().as_secs_f64());
        self.bar.set_position(done as u64);
        self.bar.set_message(line.clone());
        progress::status(line);
        if done == total {
            self.bar.finish_and_clear();
        }
    }
}

/// Runs the cells `jobs` at a time, splitting the CPU cores between them; the tables are
/// rewritten (in grid order) whenever a cell finishes. After a failure no new cell starts, the
/// running ones finish and are kept, and the first error is returned.
fn run_in_parallel(
    cells: &[Cell],
    labels: &[String],
    ctx: &Context,
    opts: &RunOptions,
    jobs: usize,
    start: Instant,
    tracker: &Tracker,
) -> Result<Vec<Summary>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1);
    // Federated cells that would take every core for their clients get their share.
    let cells: Vec<Cell> = cells
        .iter()
        .cloned()
        .map(|mut c| {
            if let Some(f) = &mut c.experiment.federation
                && f.workers == 0
            {
                f.workers = threads;
            }
            c
        })
        .collect();
    let slots: Mutex<Vec<Option<Summary>>> = Mutex::new(vec![None; cells.len()]);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                tch::set_num_threads(threads as i32);
                let mut ctx = ctx.clone();
                while lock(&failed).is_none() {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(cell) = cells.get(i) else { break };
                    let outcome = tracker
                        .run(i, cell, opts, || run_cell(cell, &mut ctx, opts, &labels[i]))
                        .and_then(|s| {
                            progress::status(format!("{}: {}", labels[i], one_line(&s)));
                            let mut slots = lock(&slots);
                            slots[i] = Some(s);
                            let done: Vec<Summary> = slots.iter().flatten().cloned().collect();
                            write_results(&opts.sweep_dir(), &done, start.elapsed().as_secs_f64())
                        });
                    tracker.report_progress();
                    if let Err(e) = outcome {
                        lock(&failed).get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    Ok(slots
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|s| s.expect("every cell ran"))
        .collect())
}

/// The finished results of `cells` in `opts.out` (cells whose summary matches their current
/// configuration), and the ids of those without one: what `collect` builds the sweep from once
/// every shard has run.
pub fn collect(cells: &[Cell], opts: &RunOptions) -> (Vec<Summary>, Vec<String>) {
    let opts = RunOptions {
        force: false,
        ..opts.clone()
    };
    let mut done = Vec::new();
    let mut missing = Vec::new();
    for cell in cells {
        let cell = cell.resolved(opts.data_root.as_deref());
        match finished_earlier(&cell, &opts) {
            Some(s) => done.push(s),
            None => missing.push(cell.id()),
        }
    }
    (done, missing)
}
