//! `fedsentry._native`: the library's federation, aggregation rules and attacks for Python.
//! Parameters travel as flat contiguous float32 numpy arrays (the layout of
//! `fedsentry::models::params`); reports as plain dicts and lists. Heavy calls (training,
//! aggregation, evaluation, attacks) release the GIL. Errors are `ValueError`s whose message
//! names the file, key or argument, as the command line's do.
//!
//! The Python package's `__init__.py` imports torch first (this module links its libtorch) and
//! documents every call; this file keeps to the conversions.

use fedsentry::federated::{self, Aggregator as RuleAggregator, Federation, RoundAggregate};
use fedsentry::vector::ClientUpdate;
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde::Serialize;

fn err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Any array-like as a flat float32 vector (float32 input is copied bit for bit).
fn floats(py: Python<'_>, x: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<f32>> {
    let np = py.import("numpy")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", "float32")?;
    let arr = np
        .call_method("ascontiguousarray", (x,), Some(&kwargs))
        .map_err(|e| err(format!("{what}: not a float array: {e}")))?
        .call_method0("ravel")?;
    let ro: PyReadonlyArray1<f32> = arr.extract()?;
    Ok(ro.as_slice().map_err(err)?.to_vec())
}

/// An update as Python sees it: (client, params, num_examples).
type PyUpdate<'py> = (usize, Bound<'py, PyArray1<f32>>, usize);

fn array<'py>(py: Python<'py>, v: Vec<f32>) -> Bound<'py, PyArray1<f32>> {
    PyArray1::from_vec(py, v)
}

/// A serializable value as Python objects (through JSON: dicts, lists, numbers, strings).
fn to_py<'py>(py: Python<'py>, v: &impl Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(v).map_err(err)?;
    py.import("json")?.call_method1("loads", (text,))
}

/// A Python value (dict, str holding TOML or JSON) as a configuration type.
fn from_py<T: serde::de::DeserializeOwned>(
    py: Python<'_>,
    v: &Bound<'_, PyAny>,
    what: &str,
) -> PyResult<T> {
    if let Ok(text) = v.extract::<String>() {
        return toml::from_str(&text)
            .or_else(|_| serde_json::from_str(&text))
            .map_err(|e| err(format!("{what}: {e}")));
    }
    let json: String = py.import("json")?.call_method1("dumps", (v,))?.extract()?;
    serde_json::from_str(&json).map_err(|e| err(format!("{what}: {e}")))
}

fn to_py_updates(py: Python<'_>, ups: Vec<ClientUpdate>) -> Vec<PyUpdate<'_>> {
    ups.into_iter()
        .map(|u| (u.client, array(py, u.params), u.num_examples))
        .collect()
}

/// `[(client, params, num_examples), ...]` as updates.
fn updates(py: Python<'_>, list: &Bound<'_, PyAny>) -> PyResult<Vec<ClientUpdate>> {
    let mut out = Vec::new();
    for (i, item) in list.try_iter()?.enumerate() {
        let (client, params, n): (usize, Bound<'_, PyAny>, usize) =
            item?.extract().map_err(|e| {
                err(format!(
                    "updates[{i}]: expected (client, params, num_examples): {e}"
                ))
            })?;
        out.push(ClientUpdate::new(
            client,
            floats(py, &params, &format!("updates[{i}] params"))?,
            n,
        ));
    }
    Ok(out)
}

#[derive(Serialize)]
struct Report<'a> {
    accepted: &'a [usize],
    flags: &'a [federated::strategy::Flag],
    scores: &'a [federated::strategy::Score],
}

fn aggregate_result<'py>(
    py: Python<'py>,
    out: RoundAggregate,
    excluded: Vec<usize>,
    epsilon: Option<f64>,
) -> PyResult<(Bound<'py, PyArray1<f32>>, Bound<'py, PyAny>)> {
    let report = to_py(
        py,
        &Report {
            accepted: &out.accepted,
            flags: &out.flags,
            scores: &out.scores,
        },
    )?;
    report.set_item("excluded", excluded)?;
    report.set_item("epsilon", epsilon)?;
    Ok((array(py, out.params), report))
}

/// One cell of an experiment file as a federation: its clients' data (partitioned, the
/// malicious ones poisoned), its rule, its server-side test sets.
#[pyclass(module = "fedsentry._native")]
struct Experiment {
    fed: Federation,
    name: String,
    cell: String,
}

#[pymethods]
impl Experiment {
    #[new]
    #[pyo3(signature = (path, only = Vec::new(), data_root = None, out = None))]
    fn new(
        py: Python<'_>,
        path: std::path::PathBuf,
        only: Vec<String>,
        data_root: Option<std::path::PathBuf>,
        out: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        py.allow_threads(|| {
            let cells = fedsentry::config::select(
                fedsentry::config::load(&path).map_err(err)?,
                &only,
                &path,
            )
            .map_err(err)?;
            let [cell] = cells.as_slice() else {
                return Err(err(format!(
                    "{}: {} cells match; choose one with only=[\"key=value\", ...]",
                    path.display(),
                    cells.len()
                )));
            };
            let opts = fedsentry::study::RunOptions {
                out: out.unwrap_or_else(|| {
                    std::path::PathBuf::from("runs").join(&cell.experiment.name)
                }),
                data_root,
                jobs: 1,
                ..Default::default()
            };
            let setup = fedsentry::study::federation_of(
                cell,
                &mut fedsentry::study::Context::default(),
                &opts,
            )
            .map_err(err)?;
            Ok(Experiment {
                fed: setup.federation,
                name: cell.experiment.name.clone(),
                cell: cell.id(),
            })
        })
    }

    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }
    #[getter]
    fn cell(&self) -> String {
        self.cell.clone()
    }
    #[getter]
    fn num_clients(&self) -> usize {
        self.fed.clients().len()
    }
    #[getter]
    fn rounds(&self) -> usize {
        self.fed.config().rounds
    }
    #[getter]
    fn strategy(&self) -> String {
        self.fed.strategy_name()
    }
    #[getter]
    fn malicious_clients(&self) -> Vec<usize> {
        self.fed
            .clients()
            .iter()
            .filter(|c| c.malicious)
            .map(|c| c.id)
            .collect()
    }

    fn initial_params<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        array(py, self.fed.initial_params().to_vec())
    }

    fn configure<'py>(&self, py: Python<'py>, round: usize) -> PyResult<Bound<'py, PyDict>> {
        let plan = self.fed.configure(round);
        let d = PyDict::new(py);
        d.set_item("clients", plan.clients)?;
        d.set_item("proximal_mu", plan.config.proximal_mu)?;
        d.set_item("root_size", plan.config.root_size)?;
        d.set_item("stop", plan.config.stop)?;
        Ok(d)
    }

    #[pyo3(signature = (partition_id, round, params, proximal_mu = 0.0))]
    fn train_client<'py>(
        &self,
        py: Python<'py>,
        partition_id: usize,
        round: usize,
        params: &Bound<'py, PyAny>,
        proximal_mu: f64,
    ) -> PyResult<(Bound<'py, PyArray1<f32>>, Bound<'py, PyDict>)> {
        let global = floats(py, params, "params")?;
        let config = federated::strategy::RoundConfig {
            proximal_mu,
            ..Default::default()
        };
        let fit = py
            .allow_threads(|| self.fed.fit(partition_id, &global, round, &config))
            .map_err(err)?;
        let m = PyDict::new(py);
        m.set_item("num_examples", fit.update.num_examples)?;
        m.set_item("train_loss", fit.train_loss)?;
        m.set_item("train_accuracy", fit.train_accuracy)?;
        m.set_item("seconds", fit.seconds)?;
        m.set_item(
            "malicious",
            self.fed
                .clients()
                .get(partition_id)
                .is_some_and(|c| c.malicious),
        )?;
        Ok((array(py, fit.update.params), m))
    }

    fn poison_updates<'py>(
        &self,
        py: Python<'py>,
        round: usize,
        global: &Bound<'py, PyAny>,
        updates_in: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<PyUpdate<'py>>> {
        let global = floats(py, global, "global")?;
        let mut ups = updates(py, updates_in)?;
        py.allow_threads(|| self.fed.poison_updates(round, &global, &mut ups));
        Ok(to_py_updates(py, ups))
    }

    fn aggregate<'py>(
        &self,
        py: Python<'py>,
        round: usize,
        global: &Bound<'py, PyAny>,
        updates_in: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyArray1<f32>>, Bound<'py, PyAny>)> {
        let global = floats(py, global, "global")?;
        let mut ups = updates(py, updates_in)?;
        ups.sort_by_key(|u| u.client);
        let config = self.fed.configure(round).config;
        let out = py
            .allow_threads(|| self.fed.aggregate(round, &global, ups, &config))
            .map_err(err)?;
        aggregate_result(py, out, self.fed.excluded(), self.fed.epsilon())
    }

    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        params: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let p = floats(py, params, "params")?;
        let e = py.allow_threads(|| self.fed.evaluate(&p)).map_err(err)?;
        let d = PyDict::new(py);
        d.set_item("loss", e.loss)?;
        d.set_item("accuracy", e.accuracy)?;
        d.set_item("asr", e.asr)?;
        d.set_item("asr_all", e.asr_all)?;
        Ok(d)
    }

    fn evaluate_client<'py>(
        &self,
        py: Python<'py>,
        partition_id: usize,
        params: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let p = floats(py, params, "params")?;
        let e = py
            .allow_threads(|| self.fed.evaluate_client(partition_id, &p))
            .map_err(err)?;
        e.map(|e| {
            let d = PyDict::new(py);
            d.set_item("examples", e.examples)?;
            d.set_item("loss", e.loss)?;
            d.set_item("accuracy", e.accuracy)?;
            Ok(d)
        })
        .transpose()
    }

    fn excluded(&self) -> Vec<usize> {
        self.fed.excluded()
    }
    fn epsilon(&self) -> Option<f64> {
        self.fed.epsilon()
    }
    fn rule_state(&self) -> Option<String> {
        self.fed.rule_state().map(|v| v.to_string())
    }
    fn restore_rule_state(&self, state: &str) -> PyResult<()> {
        let v = serde_json::from_str(state).map_err(|e| err(format!("state: {e}")))?;
        self.fed.restore_rule_state(v).map_err(err)
    }

    /// Adversarial versions of `images` (N·C·H·W raw pixels in [0, 1], flat or shaped) against
    /// the model holding `params`.
    #[pyo3(signature = (params, images, labels, attack, seed = 0))]
    fn adversarial<'py>(
        &self,
        py: Python<'py>,
        params: &Bound<'py, PyAny>,
        images: &Bound<'py, PyAny>,
        labels: Vec<i64>,
        attack: &Bound<'py, PyAny>,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let attack: fedsentry::attacks::evasion::EvasionConfig = from_py(py, attack, "attack")?;
        attack.validate("attack").map_err(err)?;
        let p = floats(py, params, "params")?;
        let x = floats(py, images, "images")?;
        let shared = self.fed.shared();
        let (c, s) = (shared.data.train.channels, shared.size);
        let n = labels.len();
        if x.len() != n * c * s * s {
            return Err(err(format!(
                "images: {} values, but {n} labels need {n}×{c}×{s}×{s}",
                x.len()
            )));
        }
        let out = py.allow_threads(|| -> fedsentry::Result<Vec<f32>> {
            let net = self.fed.model(&p)?;
            let dev = net.vs.device();
            let xt = tch::Tensor::from_slice(&x)
                .view([n as i64, c as i64, s as i64, s as i64])
                .to_device(dev);
            let yt = tch::Tensor::from_slice(&labels).to_device(dev);
            let logits = fedsentry::attacks::evasion::logits_of(&net, &shared.norm, c);
            let adv = attack.attack().generate(&logits, &xt, &yt, seed);
            Ok(
                Vec::<f32>::try_from(adv.to_device(tch::Device::Cpu).flatten(0, -1))
                    .expect("float pixels"),
            )
        });
        Ok(array(py, out.map_err(err)?))
    }
}

/// An aggregation rule on its own, for any server holding clients' parameter vectors.
#[pyclass(module = "fedsentry._native")]
struct Aggregator {
    inner: RuleAggregator,
}

#[pymethods]
impl Aggregator {
    #[new]
    #[pyo3(signature = (rule, clients, rounds = 1, seed = 0))]
    fn new(
        py: Python<'_>,
        rule: &Bound<'_, PyAny>,
        clients: usize,
        rounds: usize,
        seed: u64,
    ) -> PyResult<Self> {
        let rule: federated::rules::Rule = from_py(py, rule, "rule")?;
        Ok(Aggregator {
            inner: RuleAggregator::new(&rule, clients, rounds, seed).map_err(err)?,
        })
    }

    #[getter]
    fn name(&self) -> String {
        self.inner.name()
    }

    fn configure<'py>(
        &self,
        py: Python<'py>,
        round: usize,
        selected: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.configure(round, selected);
        let d = PyDict::new(py);
        d.set_item("proximal_mu", c.proximal_mu)?;
        d.set_item("root_size", c.root_size)?;
        d.set_item("stop", c.stop)?;
        Ok(d)
    }

    #[pyo3(signature = (round, global_params, updates_in, server_model = None))]
    fn aggregate<'py>(
        &self,
        py: Python<'py>,
        round: usize,
        global_params: &Bound<'py, PyAny>,
        updates_in: &Bound<'py, PyAny>,
        server_model: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyArray1<f32>>, Bound<'py, PyAny>)> {
        let global = floats(py, global_params, "global_params")?;
        let ups = updates(py, updates_in)?;
        let server = server_model
            .map(|s| floats(py, s, "server_model"))
            .transpose()?;
        let out = py
            .allow_threads(|| self.inner.aggregate(round, &global, ups, server.as_deref()))
            .map_err(err)?;
        aggregate_result(py, out, self.inner.excluded(), self.inner.epsilon())
    }

    fn excluded(&self) -> Vec<usize> {
        self.inner.excluded()
    }
    fn epsilon(&self) -> Option<f64> {
        self.inner.epsilon()
    }
    fn state(&self) -> Option<String> {
        self.inner.state().map(|v| v.to_string())
    }
    fn restore(&self, state: &str) -> PyResult<()> {
        let v = serde_json::from_str(state).map_err(|e| err(format!("state: {e}")))?;
        self.inner.restore(v).map_err(err)
    }
}

/// Model poisoning (`[federation.malicious.model_poisoning]`, e.g. `{"kind": "scaling",
/// "factor": 6}`) applied to the updates of the clients marked malicious.
#[pyfunction]
#[pyo3(signature = (attack, global_params, updates_in, malicious, seed = 0))]
fn poison_updates<'py>(
    py: Python<'py>,
    attack: &Bound<'py, PyAny>,
    global_params: &Bound<'py, PyAny>,
    updates_in: &Bound<'py, PyAny>,
    malicious: Vec<bool>,
    seed: u64,
) -> PyResult<Vec<PyUpdate<'py>>> {
    let attack: fedsentry::attacks::model::ModelPoisoning = from_py(py, attack, "attack")?;
    let global = floats(py, global_params, "global_params")?;
    let mut ups = updates(py, updates_in)?;
    if malicious.len() != ups.len() {
        return Err(err(format!(
            "malicious: {} flags for {} updates",
            malicious.len(),
            ups.len()
        )));
    }
    py.allow_threads(|| attack.apply(&global, &mut ups, &malicious, seed));
    Ok(to_py_updates(py, ups))
}

/// The CPU-kernel pins `fedsentry run` applies before libtorch starts (variable, value).
#[pyfunction]
fn cpu_kernel_pins() -> Vec<(String, String)> {
    fedsentry::numerics::PINS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Experiment>()?;
    m.add_class::<Aggregator>()?;
    m.add_function(wrap_pyfunction!(poison_updates, m)?)?;
    m.add_function(wrap_pyfunction!(cpu_kernel_pins, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
