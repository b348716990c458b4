//! Bring your own model: a TorchScript CNN exported by the virtualenv's torch gives torch's
//! logits, trains for an epoch, is attacked by PGD, freezes by its named head, and federates
//! through an experiment file. Skipped with a printed reason when torch is not importable.

mod common;

use common::{bin, tmp};
use fedsentry::attacks::evasion::{Evasion, logits_of, pgd::Pgd};
use fedsentry::config::TrainConfig;
use fedsentry::data::augment::AugmentConfig;
use fedsentry::data::normalize::Normalizer;
use fedsentry::data::synthetic::{PhantomConfig, generate};
use fedsentry::models::{FineTune, Net};
use fedsentry::train::{self};
use std::path::Path;
use tch::{Device, Kind, Tensor};

const EXPORT: &str = r#"
import sys, torch, torch.nn as nn
torch.manual_seed(0)
class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(32 * 8 * 8, 4)
    def forward(self, x):
        return self.fc(self.drop(self.body(x)))
m = torch.jit.script(Cnn().eval())
m.save(sys.argv[1] + "/cnn.pt")
x = torch.rand(3, 1, 32, 32)
with torch.no_grad():
    y = m(x)
x.numpy().tofile(sys.argv[1] + "/x.bin")
y.numpy().tofile(sys.argv[1] + "/y.bin")
"#;

fn floats(path: &Path, shape: &[i64]) -> Tensor {
    Tensor::from_data_size(&std::fs::read(path).unwrap(), shape, Kind::Float)
}

#[test]
fn torchscript_model_trains_is_attacked_and_federates() {
    let Some(python) = common::torchvision_python() else {
        return;
    };
    let dir = tmp("torchscript");
    common::run_python(&python, EXPORT, &[dir.to_str().unwrap()]);
    let script = dir.join("cnn.pt");

    // Torch's logits.
    let net = Net::from_torchscript(&script, "fc", 4, 1, 32, Device::Cpu).unwrap();
    let x = floats(&dir.join("x.bin"), &[3, 1, 32, 32]);
    let want = floats(&dir.join("y.bin"), &[3, 4]);
    let got = tch::no_grad(|| net.forward_t(&x, false));
    let diff = f64::try_from((got - want).abs().max()).unwrap();
    assert!(diff < 1e-5, "logits differ from torch by {diff}");

    // The named head is what classifier-only fine-tuning trains.
    assert_eq!(net.apply_fine_tune(FineTune::ClassifierOnly).unwrap(), 1.0);
    assert_eq!(net.trainable_names(), vec!["fc.bias", "fc.weight"]);
    net.apply_fine_tune(FineTune::Full).unwrap();

    // One epoch of training on the synthetic phantoms moves every parameter and learns.
    tch::manual_seed(0);
    let data = generate(&PhantomConfig {
        size: 32,
        train_per_class: 50,
        test_per_class: 20,
        ..Default::default()
    });
    let norm = Normalizer::from_set(&data.train);
    let before: Vec<Tensor> = net.parameters().iter().map(|(_, t)| t.copy()).collect();
    let cfg = TrainConfig::adam(1, 16);
    let hist = train::fit(
        &net,
        &data.train,
        None,
        &norm,
        &cfg,
        &AugmentConfig::default(),
        0,
        &train::Objective::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(hist.len(), 1);
    assert!(hist[0].train_loss.is_finite());
    for ((n, t), b) in net.parameters().iter().zip(&before) {
        assert!(!t.equal(b), "{n} did not train");
    }

    // PGD against it changes predictions within the ε-ball.
    let (_, clean_pred) = train::evaluate(&net, &data.test, &norm);
    let xs = data.test.to_tensor();
    let ys = data.test.labels_tensor();
    let model = logits_of(&net, &norm, 1);
    let pgd = Pgd {
        eps: 0.1,
        alpha: 0.02,
        steps: 10,
        random_start: true,
        target: None,
    };
    let adv = pgd.generate(&*model, &xs, &ys, 7);
    let linf = f64::try_from((&adv - &xs).abs().max()).unwrap();
    assert!(linf <= 0.1 + 1e-6, "perturbation {linf}");
    let changed = |x: &Tensor| {
        let pred = Vec::<i64>::try_from(tch::no_grad(|| model(x)).argmax(1, false)).unwrap();
        pred.iter().zip(&clean_pred).filter(|(a, c)| a != c).count()
    };
    // Random ±ε noise as the yardstick: the attack must do far better than it.
    let noise = (&xs + xs.rand_like().ge(0.5).to_kind(Kind::Float) * 0.2 - 0.1).clamp(0.0, 1.0);
    let (by_pgd, by_noise) = (changed(&adv), changed(&noise));
    println!(
        "PGD changed {by_pgd}, random noise {by_noise} of {} predictions",
        clean_pred.len()
    );
    assert!(
        by_pgd >= 20 && by_pgd >= 2 * by_noise.max(5),
        "PGD {by_pgd}, noise {by_noise}"
    );

    // A head that is not a layer of the module, and a wrong class count, are named errors.
    let e = Net::from_torchscript(&script, "classifier", 4, 1, 32, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cnn.pt") && e.contains("model.head") && e.contains("body, fc"),
        "{e}"
    );
    let e = Net::from_torchscript(&script, "fc", 3, 1, 32, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("[1, 3]"), "{e}");

    // Federated through an experiment file, like a built-in model.
    let cfg = dir.join("fed.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"script\"\nseed = 1\n[data]\nsource = \"synthetic\"\nsize = 32\n\
             [data.synthetic]\ntrain_per_class = 20\ntest_per_class = 5\n\
             [model]\narch = \"torchscript\"\nscript = \"{}\"\nhead = \"fc\"\n\
             [train]\nepochs = 1\nbatch_size = 16\n[federation]\nclients = 2\nrounds = 2\n",
            script.display()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let run = bin()
        .args(["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let cell = &summary["cells"][0];
    assert_eq!(cell["model"], "torchscript");
    assert_eq!(
        cell["federation"]["poisoned_per_client"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(cell["clean_accuracy"].as_f64().is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}
