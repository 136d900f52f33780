//! Cross-cutting numeric tests: finite differences, the seed's facts, f32 vs f64, extremes.

use crate::ActivationKind;

/// |a − b| ≤ abs + rel·|b|.
fn close(a: f64, b: f64, abs: f64, rel: f64) -> bool {
    (a - b).abs() <= abs + rel * b.abs()
}

/// Every kind, plus non-default hyper-parameters.
fn kinds() -> Vec<ActivationKind> {
    let mut k = ActivationKind::ALL.to_vec();
    k.push(ActivationKind::LeakyRelu { slope: 0.2 });
    k.push(ActivationKind::Elu { alpha: 2.5 });
    k
}

/// −30..30 in steps of 0.0625 (≈ 960 points), shifted by 0.01 so no point is within 1e-3 of
/// a kink (0, ±1).
fn grid() -> Vec<f64> {
    (0..=960).map(|i| -30.0 + 0.01 + 0.0625 * i as f64).collect()
}

#[test]
fn derivatives_match_central_differences_from_input_and_output() {
    let h = 1e-6;
    for k in kinds() {
        let d_out = k.output_derivative().ok();
        let xs = grid();
        let mut ys = xs.clone();
        k.forward_slice(&mut ys);
        let mut g_in = vec![1.0; xs.len()];
        k.backward_from_input(&xs, &mut g_in).unwrap();
        let mut g_out = vec![1.0; xs.len()];
        if let Some(d) = d_out {
            d.backward(&ys, &mut g_out).unwrap();
        }
        for (i, &x) in xs.iter().enumerate() {
            let fd = (k.f(x + h) - k.f(x - h)) / (2.0 * h);
            assert!(close(k.df(x), fd, 1e-8, 1e-6), "{k} df({x}) = {} vs fd {fd}", k.df(x));
            assert!(close(g_in[i], fd, 1e-8, 1e-6), "{k} from input at {x}: {} vs fd {fd}", g_in[i]);
            if d_out.is_some() {
                assert!(close(g_out[i], fd, 1e-8, 1e-6), "{k} from output at {x}: {} vs fd {fd}", g_out[i]);
            }
        }
    }
}

#[test]
fn sigmoid_and_tanh_derivatives_peak_at_zero_and_vanish_when_saturated() {
    let (s, t) = (ActivationKind::Sigmoid, ActivationKind::Tanh);
    assert!(close(s.df(0.0f64), 0.25, 1e-15, 0.0));
    assert!(close(t.df(0.0f64), 1.0, 1e-15, 0.0));
    for x in grid() {
        assert!(s.df(x) <= 0.25 + 1e-15, "σ′({x})");
        assert!(t.df(x) <= 1.0 + 1e-15, "tanh′({x})");
        if x.abs() > 10.0 {
            assert!(s.df(x) < 1e-4 && t.df(x) < 1e-4, "x = {x}");
        }
    }
    // The same from the output path, in f32 too.
    for d in [s.output_derivative().unwrap(), t.output_derivative().unwrap()] {
        for x in [-30.0f32, -10.5, 10.5, 30.0] {
            let y = d.kind().f(x);
            assert!(d.df(y) < 1e-4, "{} at {x}", d.kind());
        }
    }
}

#[test]
fn relu_derivative_is_a_step_and_elu_derivative_is_positive() {
    let r = ActivationKind::Relu;
    for x in grid() {
        let want = if x > 0.0 { 1.0 } else { 0.0 };
        assert!(close(r.df(x), want, 0.0, 0.0), "relu′({x})");
        let d = r.output_derivative().unwrap();
        assert!(close(d.df(r.f(x)), want, 0.0, 0.0), "relu′ from y at {x}");
    }
    for k in [ActivationKind::ELU, ActivationKind::Elu { alpha: 0.1 }, ActivationKind::Selu] {
        let d = k.output_derivative().unwrap();
        for x in grid().into_iter().chain([-700.0, -1e4, 0.0, 1e4]) {
            assert!(k.df(x) > 0.0 || x < -100.0, "{k}′({x}) = {}", k.df(x));
            assert!(k.df(x) >= 0.0 && d.df(k.f(x)) >= 0.0, "{k}′({x})");
        }
        // Strictly positive wherever e^x does not underflow.
        assert!(k.df(-30.0f64) > 0.0 && d.df(k.f(-30.0f64)) > 0.0);
    }
}

#[test]
fn f32_slices_agree_with_f64() {
    for k in kinds() {
        let x32: Vec<f32> = grid().iter().map(|&x| x as f32).collect();
        let x64: Vec<f64> = x32.iter().map(|&x| f64::from(x)).collect();
        let (mut y32, mut y64) = (x32.clone(), x64.clone());
        k.forward_slice(&mut y32);
        k.forward_slice(&mut y64);
        let (mut gi32, mut gi64) = (vec![1.0f32; x32.len()], vec![1.0f64; x64.len()]);
        k.backward_from_input(&x32, &mut gi32).unwrap();
        k.backward_from_input(&x64, &mut gi64).unwrap();
        let (mut go32, mut go64) = (vec![1.0f32; x32.len()], vec![1.0f64; x64.len()]);
        if let Ok(d) = k.output_derivative() {
            d.backward(&y32, &mut go32).unwrap();
            d.backward(&y64, &mut go64).unwrap();
        }
        for i in 0..x32.len() {
            let x = x64[i];
            assert!(close(f64::from(y32[i]), y64[i], 1e-6, 1e-6), "{k} f({x}): {} vs {}", y32[i], y64[i]);
            assert!(close(f64::from(gi32[i]), gi64[i], 1e-6, 1e-6), "{k} df({x}): {} vs {}", gi32[i], gi64[i]);
            assert!(close(f64::from(go32[i]), go64[i], 1e-6, 1e-6), "{k} df_y({x}): {} vs {}", go32[i], go64[i]);
        }
    }
}

#[test]
fn stable_at_the_extremes() {
    let s = ActivationKind::Sigmoid;
    assert_eq!(s.f(-1000.0f64).to_bits(), 0.0f64.to_bits());
    assert_eq!(s.f(1000.0f64).to_bits(), 1.0f64.to_bits());
    assert_eq!(s.f(-1000.0f32).to_bits(), 0.0f32.to_bits());
    assert_eq!(s.f(1000.0f32).to_bits(), 1.0f32.to_bits());
    let huge: [f64; 8] = [-1e300, -1e30, -1e4, -1000.0, 1000.0, 1e4, 1e30, 1e300];
    for k in kinds() {
        for &x in &huge {
            let (y, dy) = (k.f(x), k.df(x));
            assert!(y.is_finite() && dy.is_finite(), "{k} at {x}: f = {y}, df = {dy}");
            if let Ok(d) = k.output_derivative() {
                assert!(d.df(y).is_finite(), "{k} df from y at {x}");
            }
            let x32 = x.clamp(-3e38, 3e38) as f32;
            let (y, dy) = (k.f(x32), k.df(x32));
            assert!(y.is_finite() && dy.is_finite(), "{k} at {x32} f32: f = {y}, df = {dy}");
        }
    }
    // ELU/SELU saturate at −α and −λα; e.g. ELU(−1e4) = −1 exactly, not NaN.
    assert!(close(ActivationKind::ELU.f(-1e4f64), -1.0, 1e-15, 0.0));
    assert!(close(ActivationKind::Selu.f(-1e4f64), -crate::SELU_LAMBDA * crate::SELU_ALPHA, 1e-15, 0.0));
    // expm1 keeps tiny negative inputs accurate: ELU(−1e-10) = −1e-10 + 5e-21.
    assert!(close(ActivationKind::ELU.f(-1e-10f64), -1e-10, 0.0, 1e-9));
}

/// erf by its Maclaurin series (enough terms for |x| ≤ 4 to ~1e-9).
fn erf(x: f64) -> f64 {
    let mut term = x;
    let mut sum = x;
    for n in 1..120 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn gelu_tanh_form_is_within_1e_3_of_exact_gelu() {
    assert!(close(erf(1.0), 0.842_700_792_949_714_9, 1e-12, 0.0));
    let mut worst = 0.0f64;
    for i in 0..=800 {
        let x = -4.0 + 0.01 * i as f64;
        let exact = 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2));
        worst = worst.max((ActivationKind::Gelu.f(x) - exact).abs());
    }
    assert!(worst < 1e-3, "worst {worst}");
}

/// The limits at ±∞ (lower, upper) of every kind of [`kinds`].
fn limits(k: ActivationKind) -> (f64, f64) {
    use crate::{SELU_ALPHA, SELU_LAMBDA};
    match k {
        ActivationKind::Sigmoid => (0.0, 1.0),
        ActivationKind::Tanh | ActivationKind::Softsign | ActivationKind::HardTanh => (-1.0, 1.0),
        ActivationKind::Relu | ActivationKind::Gelu => (0.0, f64::INFINITY),
        ActivationKind::LeakyRelu { .. } | ActivationKind::Identity => (f64::NEG_INFINITY, f64::INFINITY),
        ActivationKind::Elu { alpha } => (-alpha, f64::INFINITY),
        ActivationKind::Selu => (-SELU_LAMBDA * SELU_ALPHA, f64::INFINITY),
    }
}

#[test]
fn every_kind_has_its_limits_at_infinity_and_no_nan() {
    for k in kinds() {
        let (lo, hi) = limits(k);
        for (x, want) in [(f64::NEG_INFINITY, lo), (f64::INFINITY, hi)] {
            let y = k.f(x);
            assert!(y == want || close(y, want, 1e-12, 1e-12), "{k}({x}) = {y}, limit {want}");
            let y32 = k.f(x as f32);
            assert!(f64::from(y32) == want || close(f64::from(y32), want, 1e-6, 1e-6), "{k}({x}) f32 = {y32}");
            assert!(!k.df(x).is_nan() && !k.df(x as f32).is_nan(), "{k}′({x}) = {}", k.df(x));
            // the slice loops agree, and the derivative from the output is not NaN either
            let mut v = [x, 0.5];
            k.forward_slice(&mut v);
            assert!(v[0] == y || (v[0].is_nan() && y.is_nan()), "{k} slice at {x}");
            let mut g = [1.0, 1.0];
            k.backward_from_input(&[x, 0.5], &mut g).unwrap();
            assert!(!g[0].is_nan(), "{k} backward_from_input at {x}");
            if let Ok(d) = k.output_derivative() {
                let mut g = [1.0, 1.0];
                d.backward(&v, &mut g).unwrap();
                assert!(!g[0].is_nan(), "{k} backward from the output at {x}");
            }
        }
    }
    // GELU′ tends to 0 and 1, softsign′ to 0.
    assert_eq!((ActivationKind::Gelu.df(f64::NEG_INFINITY), ActivationKind::Gelu.df(f64::INFINITY)), (0.0, 1.0));
    assert_eq!(ActivationKind::Softsign.df(f64::INFINITY), 0.0);
}

#[test]
fn no_kind_returns_infinity_or_nan_for_finite_input() {
    for k in kinds() {
        for x in [f64::MAX, -f64::MAX, 1e300, -1e300, f64::MIN_POSITIVE, -0.0] {
            let (y, d) = (k.f(x), k.df(x));
            // identity, ReLU and the ELUs pass huge inputs through: finite in, finite out
            assert!(y.is_finite() && d.is_finite(), "{k}({x}) = {y}, f′ = {d}");
        }
        for x in [f32::MAX, -f32::MAX, 1e38, -1e38] {
            let (y, d) = (k.f(x), k.df(x));
            assert!(y.is_finite() && d.is_finite(), "{k}({x}) f32 = {y}, f′ = {d}");
            let mut v = [x];
            k.forward_slice(&mut v);
            assert!(v[0].is_finite(), "{k} slice at {x}: {}", v[0]);
        }
    }
    // SELU saturates at the largest value instead of overflowing.
    assert_eq!(ActivationKind::Selu.f(f64::MAX), f64::MAX);
    assert_eq!(ActivationKind::Selu.f(f32::MAX), f32::MAX);
}

#[test]
fn backward_loops_refuse_slices_of_different_lengths_leaving_the_gradient() {
    for k in kinds() {
        let mut g = [2.0f32, 3.0];
        let e = k.backward_from_input(&[0.5f32], &mut g).unwrap_err();
        assert!(matches!(e, rnnlab_core::Error::Shape { .. }), "{e}");
        assert_eq!(g, [2.0, 3.0]);
        if let Ok(d) = k.output_derivative() {
            assert!(d.backward(&[0.5f32, 0.1, 0.2], &mut g).is_err());
            let mut out = [7.0f32; 2];
            assert!(d.backward_into(&[0.5f32, 0.1], &[1.0], &mut out).is_err());
            assert!(d.backward_into(&[0.5f32], &[1.0, 1.0], &mut out).is_err());
            assert!(d.backward_into(&[0.5f32, 0.1], &[1.0, 1.0], &mut out[..1]).is_err());
            assert_eq!((g, out), ([2.0, 3.0], [7.0; 2]));
            assert!(k.backward_from_output_into(&[0.5f32], &[1.0, 1.0], &mut out).is_err());
        }
    }
}
