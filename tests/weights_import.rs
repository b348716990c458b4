//! Weight files written by the virtualenv's torch with torchvision's real naming (random
//! weights, randomized batch-norm statistics) load into the zoo and give torch's logits; the
//! loaded model fine-tunes; tensors that do not fit are reported by name. Skipped with a
//! printed reason when torchvision is not importable.

mod common;

use fedsentry::models::weights::{self, Head};
use fedsentry::models::{Arch, FineTune, Net};
use std::path::Path;
use tch::{Device, Kind, Tensor, nn, nn::OptimizerConfig};

/// (model, input side, how torch writes the file).
const CASES: &[(Arch, i64, &str)] = &[
    (Arch::MobileNetV2, 32, "zip"),
    (Arch::Vgg16, 32, "zip"),
    (Arch::MobileNetV3Small, 32, "legacy"),
    (Arch::EfficientNetB0, 32, "checkpoint"),
    (Arch::Densenet121, 32, "zip"),
    (Arch::Resnet18, 32, "zip"),
    (Arch::Alexnet, 64, "zip"),
];

const SCRIPT: &str = r#"
import sys, torch, torchvision.models as m
out = sys.argv[1]
for case in sys.argv[2:]:
  name, size, fmt = case.split(":")
  size = int(size)
  torch.manual_seed(0)
  net = getattr(m, name)(weights=None, num_classes=4)
  with torch.no_grad():
      for mod in net.modules():
          if isinstance(mod, torch.nn.BatchNorm2d):
              mod.running_mean.uniform_(-0.2, 0.2)
              mod.running_var.uniform_(0.5, 1.5)
              mod.weight.uniform_(0.5, 1.5)
              mod.bias.uniform_(-0.2, 0.2)
  net.eval()
  x = torch.rand(2, 3, size, size)
  with torch.no_grad():
      y = net(x)
  sd = net.state_dict()
  path = f"{out}/{name}.pth"
  if fmt == "legacy":
      torch.save(sd, path, _use_new_zipfile_serialization=False)
  elif fmt == "checkpoint":
      # A training checkpoint of a DataParallel model.
      torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, path)
  else:
      torch.save(sd, path)
  x.numpy().tofile(f"{out}/{name}.x.bin")
  y.numpy().tofile(f"{out}/{name}.y.bin")
"#;

fn floats(path: &Path, shape: &[i64]) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    Tensor::from_data_size(&bytes, shape, Kind::Float)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

#[test]
fn torch_files_load_with_torch_logits() {
    let Some(python) = common::torchvision_python() else {
        return;
    };
    let dir = common::tmp("pth");
    let out = dir.to_str().unwrap();
    // One Python process writes every case (importing torch once).
    let cases: Vec<String> = CASES
        .iter()
        .map(|(arch, size, fmt)| format!("{}:{size}:{fmt}", arch.name()))
        .collect();
    let mut args = vec![out];
    args.extend(cases.iter().map(String::as_str));
    common::run_python(&python, SCRIPT, &args);
    for &(arch, size, fmt) in CASES {
        let name = arch.name();
        let path = dir.join(format!("{name}.pth"));
        let net = Net::new(arch, 4, 3, size as usize, Device::Cpu).unwrap();
        let report = weights::load(&net, &path, Head::Load).unwrap();
        assert!(report.fits() && report.loaded > 0, "{name}");
        let x = floats(&dir.join(format!("{name}.x.bin")), &[2, 3, size, size]);
        let want = floats(&dir.join(format!("{name}.y.bin")), &[2, 4]);
        assert!(
            max_abs(&want, &want.zeros_like()) > 1e-3,
            "{name}: torch's logits are ~0"
        );
        let got = tch::no_grad(|| net.forward_t(&x, false));
        let diff = max_abs(&got, &want);
        println!(
            "{name} ({fmt}): {} tensors, max |Δlogit| = {diff:.2e}",
            report.loaded
        );
        assert!(diff < 1e-4, "{name}: logits differ from torch by {diff}");

        if arch == Arch::MobileNetV2 {
            fine_tunes(&net, &x);
            reports_what_does_not_fit(&path);
        }
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A few Adam steps on a fixed batch lower the loss of the loaded model.
fn fine_tunes(net: &Net, x: &Tensor) {
    net.apply_fine_tune(FineTune::Full).unwrap();
    let y = Tensor::from_slice(&[1i64, 3]);
    let mut opt = nn::Adam::default().build(&net.vs, 1e-3).unwrap();
    let loss = |train| net.forward_t(x, train).cross_entropy_for_logits(&y);
    let before = f64::try_from(tch::no_grad(|| loss(false))).unwrap();
    for _ in 0..5 {
        opt.backward_step(&loss(true));
    }
    let after = f64::try_from(tch::no_grad(|| loss(false))).unwrap();
    assert!(after < before, "loss {before} -> {after}");
}

/// A 3-class model cannot take the 4-class head, named in the error; re-initializing the
/// head loads the rest; a missing tensor is named and nothing is copied.
fn reports_what_does_not_fit(path: &Path) {
    let net = Net::new(Arch::MobileNetV2, 3, 3, 32, Device::Cpu).unwrap();
    let err = weights::load(&net, path, Head::Load)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("classifier.1.weight: file [4, 1280], model [3, 1280]"),
        "{err}"
    );
    let report = weights::load(&net, path, Head::Reinit).unwrap();
    assert_eq!(
        report.reinitialized,
        vec!["classifier.1.bias", "classifier.1.weight"]
    );

    let vgg = Net::new(Arch::Vgg16, 4, 3, 32, Device::Cpu).unwrap();
    let before = vgg.vs.variables()["features.0.weight"].copy();
    let err = weights::load(&vgg, path, Head::Reinit)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing from the file (26)"), "{err}");
    assert!(err.contains("unexpected in the file"), "{err}");
    assert!(before.equal(&vgg.vs.variables()["features.0.weight"]));
}
