//! Rényi-DP accountant for the sampled Gaussian mechanism (Mironov, Talwar & Zhang 2019): RDP
//! of one step at each order α for sampling rate q and noise multiplier σ, composed over steps
//! by addition, converted to (ε, δ) with the bound of Balle et al. (2020, Thm. 21), minimized
//! over the orders.

use statrs::function::erf::erfc;

/// The orders tracked (those of common DP libraries).
pub fn default_orders() -> Vec<f64> {
    let mut v = vec![1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5];
    v.extend((5..64).map(f64::from));
    v.extend([64.0, 128.0, 256.0]);
    v
}

fn log_add(x: f64, y: f64) -> f64 {
    let (a, b) = if x > y { (x, y) } else { (y, x) };
    if a == f64::NEG_INFINITY {
        return b;
    }
    (b - a).exp().ln_1p() + a
}

fn log_sub(x: f64, y: f64) -> f64 {
    // log(e^x − e^y), x ≥ y.
    if y == f64::NEG_INFINITY {
        return x;
    }
    if x <= y {
        return f64::NEG_INFINITY;
    }
    x + (-(y - x).exp()).ln_1p()
}

fn log_erfc(x: f64) -> f64 {
    if x < 20.0 {
        erfc(x).ln()
    } else {
        // Asymptotic series of erfc for large x.
        let r = 1.0 / (x * x);
        -x * x - x.ln() - 0.5 * std::f64::consts::PI.ln()
            + (1.0 - 0.5 * r + 0.75 * r * r - 1.875 * r * r * r).ln()
    }
}

fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    let mut log_binom = 0.0f64; // log C(α, k), updated incrementally
    for k in 0..=alpha {
        if k > 0 {
            log_binom += ((alpha - k + 1) as f64).ln() - (k as f64).ln();
        }
        let kf = k as f64;
        let term = log_binom
            + kf * q.ln()
            + (alpha - k) as f64 * (1.0 - q).ln()
            + (kf * kf - kf) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, term);
    }
    log_a
}

fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut a0, mut a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let mut binom = 1.0f64; // C(α, i), signed
    let mut i = 0u32;
    loop {
        if i > 0 {
            binom *= (alpha - (i - 1) as f64) / i as f64;
        }
        let fi = i as f64;
        let j = alpha - fi;
        let log_coef = binom.abs().ln();
        let t0 = log_coef + fi * q.ln() + j * (1.0 - q).ln();
        let t1 = log_coef + j * q.ln() + fi * (1.0 - q).ln();
        let e0 = 0.5f64.ln() + log_erfc((fi - z0) / (2f64.sqrt() * sigma));
        let e1 = 0.5f64.ln() + log_erfc((z0 - j) / (2f64.sqrt() * sigma));
        let s0 = t0 + (fi * fi - fi) / (2.0 * sigma * sigma) + e0;
        let s1 = t1 + (j * j - j) / (2.0 * sigma * sigma) + e1;
        if binom > 0.0 {
            a0 = log_add(a0, s0);
            a1 = log_add(a1, s1);
        } else {
            a0 = log_sub(a0, s0);
            a1 = log_sub(a1, s1);
        }
        i += 1;
        if s0.max(s1) < -30.0 || i > 10_000 {
            break;
        }
    }
    log_add(a0, a1)
}

/// RDP of one step of the sampled Gaussian mechanism at order `alpha`.
pub fn rdp_step(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let log_a = if alpha.fract() == 0.0 {
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)
    };
    log_a / (alpha - 1.0)
}

/// (ε, best order) after RDP `rdp[i]` at `orders[i]`, for δ.
pub fn epsilon(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    orders
        .iter()
        .zip(rdp)
        .map(|(&a, &r)| {
            let eps = r - (delta.ln() + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln();
            (eps.max(0.0), a)
        })
        .filter(|(e, _)| e.is_finite())
        .min_by(|x, y| x.0.total_cmp(&y.0))
        .unwrap_or((f64::INFINITY, f64::NAN))
}

/// Accumulates the privacy loss of repeated sampled Gaussian steps.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Accountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
}

impl Default for Accountant {
    fn default() -> Self {
        let orders = default_orders();
        let rdp = vec![0.0; orders.len()];
        Accountant { orders, rdp }
    }
}

impl Accountant {
    /// Records `steps` steps with sampling rate q and noise multiplier σ.
    pub fn step(&mut self, q: f64, sigma: f64, steps: usize) {
        for (r, &a) in self.rdp.iter_mut().zip(&self.orders) {
            *r += steps as f64 * rdp_step(q, sigma, a);
        }
    }

    pub fn epsilon(&self, delta: f64) -> f64 {
        epsilon(&self.orders, &self.rdp, delta).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        ((a - b) / b).abs() < 1e-6
    }

    // Reference values: Opacus 1.6.0, `opacus.accountants.analysis.rdp` (`_compute_rdp`,
    // `compute_rdp` + `get_privacy_spent`) with the same orders.
    #[test]
    fn one_step_matches_reference() {
        for (q, s, a, want) in [
            (0.01, 1.0, 2.0, 0.00017181342207453428),
            (0.01, 1.0, 2.5, 0.00021757533233085147),
            (0.1, 2.0, 32.0, 1.627202301019436),
            (0.3, 0.8, 1.5, 0.17221959584508906),
        ] {
            let got = rdp_step(q, s, a);
            assert!(close(got, want), "q={q} σ={s} α={a}: {got} vs {want}");
        }
        assert_eq!(rdp_step(1.0, 2.0, 3.0), 3.0 / 8.0);
        assert_eq!(rdp_step(0.0, 2.0, 3.0), 0.0);
    }

    #[test]
    fn composed_epsilon_matches_reference() {
        for (q, s, steps, delta, want) in [
            // The DP-SGD MNIST setting: batch 256 of 60,000, σ = 1.1, 60 epochs.
            (
                256.0 / 60000.0,
                1.1,
                60 * 60000 / 256,
                1e-5,
                2.5969811785953,
            ),
            (0.01, 1.0, 1000, 1e-5, 2.107753075451561),
            (0.1, 2.0, 100, 1e-6, 2.915592905738108),
            (1.0, 5.0, 10, 1e-5, 2.814109167845533),
            (0.3, 0.8, 20, 1e-5, 15.49494599207479),
        ] {
            let mut acc = Accountant::default();
            acc.step(q, s, steps);
            let got = acc.epsilon(delta);
            assert!(close(got, want), "q={q} σ={s} T={steps}: {got} vs {want}");
        }
    }

    #[test]
    fn epsilon_grows_with_steps() {
        let mut acc = Accountant::default();
        let mut last = 0.0;
        for _ in 0..5 {
            acc.step(0.1, 1.0, 10);
            let e = acc.epsilon(1e-5);
            assert!(e > last);
            last = e;
        }
    }
}
