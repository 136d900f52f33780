//! Tests of [`Init`]: draw statistics against each formula, orthogonality, packing, errors.

use super::*;
use crate::{max_singular_value, spectral_radius};
use ndarray::{ArrayView2, Axis};
use rnnlab_core::seeded_rng;

/// 400 × 250 = 10⁵ draws: fan_out = 400, fan_in = 250.
const ROWS: usize = 400;
const COLS: usize = 250;

fn mean_var(a: &Array2<f64>) -> (f64, f64) {
    let n = a.len() as f64;
    let mean = a.sum() / n;
    let var = a.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs()
}

/// Draws 10⁵ values and checks mean ≈ 0 (within 5 standard errors) and Var within 3 %
/// (the standard error of a sample variance from 10⁵ draws is ≤ 0.45 %).
fn check_zero_mean_var(init: &Init, expected_var: f64, seed: u64) -> Result<Array2<f64>> {
    let a = init.array2::<f64>(ROWS, COLS, &mut seeded_rng(seed))?;
    let (mean, var) = mean_var(&a);
    let se = (expected_var / a.len() as f64).sqrt();
    assert!(mean.abs() < 5.0 * se, "{}: mean {mean}, 5·se {}", init.name(), 5.0 * se);
    assert!(rel_close(var, expected_var, 0.03), "{}: var {var}, expected {expected_var}", init.name());
    Ok(a)
}

fn max_abs(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// ‖QᵀQ − I‖_max for orthonormal columns, computed in f64 from the stored values.
fn gram_error(q: ArrayView2<'_, f64>) -> f64 {
    let g = q.t().dot(&q);
    max_abs(&(g - Array2::<f64>::eye(q.ncols())))
}

fn f32_to_f64(a: &Array2<f32>) -> Array2<f64> {
    a.mapv(f64::from)
}

#[test]
fn uniform_respects_bounds_and_variance() -> Result<()> {
    let (low, high) = (-0.5, 1.5);
    let a = Init::Uniform { low, high }.array2::<f64>(ROWS, COLS, &mut seeded_rng(1))?;
    assert!(a.iter().all(|&x| (low..high).contains(&x)));
    let (mean, var) = mean_var(&a);
    // Mean (a + b)/2 = 0.5; Var (b − a)²/12 = 4/12.
    assert!((mean - 0.5).abs() < 5.0 * (var / a.len() as f64).sqrt(), "mean {mean}");
    assert!(rel_close(var, 4.0 / 12.0, 0.02), "var {var}");
    Ok(())
}

#[test]
fn normal_has_its_mean_and_std() -> Result<()> {
    let a = Init::Normal { mean: 2.0, std: 0.3 }.array2::<f64>(ROWS, COLS, &mut seeded_rng(2))?;
    let (mean, var) = mean_var(&a);
    assert!((mean - 2.0).abs() < 5.0 * 0.3 / (a.len() as f64).sqrt(), "mean {mean}");
    assert!(rel_close(var.sqrt(), 0.3, 0.015), "std {}", var.sqrt());
    Ok(())
}

#[test]
fn xavier_variance_is_two_over_fan_sum() -> Result<()> {
    let gain = 1.3;
    let expected = gain * gain * 2.0 / (COLS + ROWS) as f64;
    let a = check_zero_mean_var(&Init::XavierUniform { gain }, expected, 3)?;
    // The bound a = gain·√(6/(fan_in + fan_out)) is respected.
    assert!(max_abs(&a) <= gain * (6.0 / (COLS + ROWS) as f64).sqrt());
    check_zero_mean_var(&Init::XavierNormal { gain }, expected, 4)?;
    Ok(())
}

#[test]
fn kaiming_relu_variance_is_two_over_fan_in() -> Result<()> {
    let relu = Nonlinearity::Relu;
    let a =
        check_zero_mean_var(&Init::KaimingUniform { mode: FanMode::FanIn, nonlinearity: relu }, 2.0 / COLS as f64, 5)?;
    assert!(max_abs(&a) <= (6.0 / COLS as f64).sqrt());
    check_zero_mean_var(&Init::KaimingNormal { mode: FanMode::FanIn, nonlinearity: relu }, 2.0 / COLS as f64, 6)?;
    // fan_out mode with tanh: Var = (5/3)² / fan_out.
    let tanh = Nonlinearity::Tanh;
    let expected = 25.0 / 9.0 / ROWS as f64;
    check_zero_mean_var(&Init::KaimingNormal { mode: FanMode::FanOut, nonlinearity: tanh }, expected, 7)?;
    check_zero_mean_var(&Init::KaimingUniform { mode: FanMode::FanOut, nonlinearity: tanh }, expected, 8)?;
    Ok(())
}

#[test]
fn lecun_variance_is_one_over_fan_in() -> Result<()> {
    let a = check_zero_mean_var(&Init::LeCunUniform, 1.0 / COLS as f64, 9)?;
    assert!(max_abs(&a) <= (3.0 / COLS as f64).sqrt());
    check_zero_mean_var(&Init::LeCunNormal, 1.0 / COLS as f64, 10)?;
    Ok(())
}

#[test]
fn zero_gain_gives_zeros() -> Result<()> {
    for init in [Init::XavierUniform { gain: 0.0 }, Init::XavierNormal { gain: 0.0 }, Init::Orthogonal { gain: 0.0 }] {
        let a = init.array2::<f64>(3, 4, &mut seeded_rng(0))?;
        assert!(a.iter().all(|&x| x == 0.0), "{}", init.name());
    }
    Ok(())
}

#[test]
fn constant_zeros_and_identity() -> Result<()> {
    let mut rng = seeded_rng(0);
    assert!(Init::Zeros.array2::<f32>(2, 3, &mut rng)?.iter().all(|&x| x == 0.0));
    assert!(Init::Constant { value: -0.25 }.array2::<f64>(2, 3, &mut rng)?.iter().all(|&x| x == -0.25));
    let id = Init::Identity { scale: 0.5 }.array2::<f64>(3, 3, &mut rng)?;
    assert_eq!(id, Array2::<f64>::eye(3) * 0.5);
    // Rectangular, as torch.nn.init.eye_: ones on the main diagonal only.
    let wide = Init::Identity { scale: 2.0 }.array2::<f64>(2, 4, &mut rng)?;
    assert_eq!(wide, ndarray::array![[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]]);
    let tall = Init::Identity { scale: 1.0 }.array2::<f32>(3, 2, &mut rng)?;
    assert_eq!(tall, ndarray::array![[1.0f32, 0.0], [0.0, 1.0], [0.0, 0.0]]);
    Ok(())
}

#[test]
fn orthogonal_f32_square_wide_and_tall() -> Result<()> {
    let init = Init::Orthogonal { gain: 1.0 };
    let mut rng = seeded_rng(12);
    let square32 = init.array2::<f32>(64, 64, &mut rng)?;
    assert!(square32.is_standard_layout());
    let square = f32_to_f64(&square32);
    assert!(gram_error(square.view()) < 1e-5, "{}", gram_error(square.view()));
    assert!(gram_error(square.t()) < 1e-5);
    // Wide: orthonormal rows, Q Qᵀ = I.
    let wide = f32_to_f64(&init.array2::<f32>(20, 50, &mut rng)?);
    assert!(gram_error(wide.t()) < 1e-5, "{}", gram_error(wide.t()));
    // Tall: orthonormal columns, QᵀQ = I.
    let tall = f32_to_f64(&init.array2::<f32>(50, 20, &mut rng)?);
    assert!(gram_error(tall.view()) < 1e-5, "{}", gram_error(tall.view()));
    // A gain g gives all singular values g.
    let g = init_gain(1.7, &mut rng)?;
    assert!(rel_close(max_singular_value(&g)?, 1.7, 1e-10));
    assert!(max_abs(&(g.t().dot(&g) - Array2::<f64>::eye(16) * (1.7 * 1.7))) < 1e-12);
    Ok(())
}

fn init_gain(gain: f64, rng: &mut Rng) -> Result<Array2<f64>> {
    Init::Orthogonal { gain }.array2::<f64>(16, 16, rng)
}

#[test]
fn packed_orthogonal_is_orthogonal_per_gate_block() -> Result<()> {
    let h = 32;
    let w = f32_to_f64(&Init::Orthogonal { gain: 1.0 }.packed::<f32>(4, h, h, &mut seeded_rng(13))?);
    assert_eq!(w.dim(), (4 * h, h));
    for k in 0..4 {
        let block = w.slice(s![k * h..(k + 1) * h, ..]);
        assert!(gram_error(block) < 1e-5, "block {k}: {}", gram_error(block));
        assert!(gram_error(block.t()) < 1e-5, "block {k}");
    }
    // Consequently WᵀW = Σ_k Q_kᵀQ_k = 4I: W/2 has orthonormal columns but W does not.
    let whole_gram = w.t().dot(&w);
    assert!(max_abs(&(whole_gram - Array2::<f64>::eye(h) * 4.0)) < 4e-5);
    // The common bug, orthogonalising the packed [4H, H] matrix, gives WᵀW = I and blocks whose
    // QᵀQ is far from I (their sum is I, so on average I/4).
    let bug = Init::Orthogonal { gain: 1.0 }.array2::<f64>(4 * h, h, &mut seeded_rng(13))?;
    assert!(gram_error(bug.view()) < 1e-12);
    for k in 0..4 {
        let block = bug.slice(s![k * h..(k + 1) * h, ..]);
        assert!(gram_error(block) > 0.3, "block {k}: {}", gram_error(block));
    }
    Ok(())
}

#[test]
fn packed_uses_block_fans() -> Result<()> {
    // 4 blocks of [50, 200]: Xavier Var = 2/(200 + 50) = 0.008, not 2/(200 + 200) = 0.005.
    let w = Init::XavierUniform { gain: 1.0 }.packed::<f64>(4, 50, 200, &mut seeded_rng(14))?;
    let (_, var) = mean_var(&w);
    assert!(rel_close(var, 0.008, 0.03), "var {var}");
    // Fan-out Kaiming per block: Var = 2/50 per block.
    let kaiming = Init::KaimingNormal { mode: FanMode::FanOut, nonlinearity: Nonlinearity::Relu };
    let (_, var) = mean_var(&kaiming.packed::<f64>(4, 50, 200, &mut seeded_rng(15))?);
    assert!(rel_close(var, 2.0 / 50.0, 0.03), "var {var}");
    // Identity per block: each block is I.
    let id = Init::Identity { scale: 1.0 }.packed::<f64>(3, 2, 2, &mut seeded_rng(0))?;
    assert_eq!(id, ndarray::array![[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]);
    Ok(())
}

#[test]
fn packed_blocks_are_drawn_in_order_like_array2() -> Result<()> {
    // Block k is the k-th [block_rows, cols] draw from the same stream.
    let init = Init::Normal { mean: 0.0, std: 1.0 };
    let packed = init.packed::<f64>(3, 4, 5, &mut seeded_rng(16))?;
    let mut rng = seeded_rng(16);
    for k in 0..3 {
        let block = init.array2::<f64>(4, 5, &mut rng)?;
        assert_eq!(packed.slice(s![k * 4..(k + 1) * 4, ..]), block);
    }
    Ok(())
}

#[test]
fn rescaled_hits_spectral_radius_target() -> Result<()> {
    let target = 0.95;
    let init = Init::rescaled(Init::Normal { mean: 0.0, std: 1.0 }, Rescale::SpectralRadius(target));
    let w = init.array2::<f64>(64, 64, &mut seeded_rng(17))?;
    assert!(rel_close(spectral_radius(&w)?, target, 1e-6), "{}", spectral_radius(&w)?);
    // Independent check: an orthogonal base has ρ = 1 exactly, so the result must be 1.3·Q.
    let init = Init::rescaled(Init::Orthogonal { gain: 1.0 }, Rescale::SpectralRadius(1.3));
    let w = init.array2::<f64>(16, 16, &mut seeded_rng(18))?;
    assert!(max_abs(&(w.t().dot(&w) - Array2::<f64>::eye(16) * 1.69)) < 1e-9);
    // Sparse + spectral radius, the classic echo-state / Pascanu-style recurrent init, in f32.
    let init = Init::rescaled(Init::Sparse { n_nonzero: 8, std: 1.0 }, Rescale::SpectralRadius(1.1));
    let w = f32_to_f64(&init.array2::<f32>(48, 48, &mut seeded_rng(19))?);
    assert!(rel_close(spectral_radius(&w)?, 1.1, 1e-5), "{}", spectral_radius(&w)?);
    Ok(())
}

#[test]
fn rescaled_hits_max_singular_value_target() -> Result<()> {
    let init = Init::rescaled(Init::XavierNormal { gain: 1.0 }, Rescale::MaxSingularValue(2.5));
    let w = init.array2::<f64>(30, 50, &mut seeded_rng(20))?;
    assert!(rel_close(max_singular_value(&w)?, 2.5, 1e-6));
    // Cross-check with Gelfand's formula on W Wᵀ: σ₁² = ρ(W Wᵀ).
    assert!(rel_close(spectral_radius(&w.dot(&w.t()))?.sqrt(), 2.5, 1e-6));
    Ok(())
}

#[test]
fn packed_rescale_is_per_block() -> Result<()> {
    let h = 24;
    let init = Init::rescaled(Init::Normal { mean: 0.0, std: 1.0 }, Rescale::SpectralRadius(0.8));
    let w = init.packed::<f64>(4, h, h, &mut seeded_rng(21))?;
    for k in 0..4 {
        let block = w.slice(s![k * h..(k + 1) * h, ..]);
        assert!(rel_close(spectral_radius(&block)?, 0.8, 1e-6), "block {k}");
    }
    Ok(())
}

#[test]
fn sparse_has_n_nonzero_per_row() -> Result<()> {
    let w = Init::Sparse { n_nonzero: 15, std: 1.0 }.array2::<f64>(200, 500, &mut seeded_rng(22))?;
    for row in w.axis_iter(Axis(0)) {
        assert_eq!(row.iter().filter(|&&x| x != 0.0).count(), 15);
    }
    // The non-zero entries are N(0, 1): Var over 3000 draws within 10 %.
    let nz: Vec<f64> = w.iter().copied().filter(|&x| x != 0.0).collect();
    let var = nz.iter().map(|x| x * x).sum::<f64>() / nz.len() as f64;
    assert!(rel_close(var, 1.0, 0.1), "var {var}");
    Ok(())
}

#[test]
fn same_seed_same_array_different_seed_different() -> Result<()> {
    let inits = [
        Init::Uniform { low: -1.0, high: 1.0 },
        Init::Normal { mean: 0.0, std: 1.0 },
        Init::XavierUniform { gain: 1.0 },
        Init::KaimingNormal { mode: FanMode::FanIn, nonlinearity: Nonlinearity::Relu },
        Init::LeCunUniform,
        Init::Orthogonal { gain: 1.0 },
        Init::Sparse { n_nonzero: 3, std: 1.0 },
        Init::rescaled(Init::LeCunNormal, Rescale::SpectralRadius(1.0)),
    ];
    for init in &inits {
        let a = init.array2::<f64>(6, 6, &mut seeded_rng(5))?;
        let b = init.array2::<f64>(6, 6, &mut seeded_rng(5))?;
        let c = init.array2::<f64>(6, 6, &mut seeded_rng(6))?;
        assert_eq!(a, b, "{}", init.name());
        assert_ne!(a, c, "{}", init.name());
        // f32 holds the same draws, rounded.
        let a32 = init.array2::<f32>(6, 6, &mut seeded_rng(5))?;
        assert_eq!(a32, a.mapv(|x| x as f32), "{}", init.name());
    }
    Ok(())
}

#[test]
fn array1_takes_elementwise_kinds() -> Result<()> {
    let mut rng = seeded_rng(23);
    let b = Init::Uniform { low: 0.0, high: 0.1 }.array1::<f32>(1000, &mut rng)?;
    assert_eq!(b.len(), 1000);
    assert!(b.iter().all(|&x| (0.0..0.1).contains(&x)));
    let c = Init::Constant { value: 1.0 }.array1::<f64>(3, &mut rng)?;
    assert_eq!(c, ndarray::array![1.0, 1.0, 1.0]);
    // Same draws as a [1, n] matrix.
    let init = Init::Normal { mean: 0.0, std: 1.0 };
    let v = init.array1::<f64>(7, &mut seeded_rng(3))?;
    let m = init.array2::<f64>(1, 7, &mut seeded_rng(3))?;
    assert_eq!(v, m.row(0));
    assert_eq!(Init::Zeros.array1::<f64>(2, &mut rng)?, ndarray::array![0.0, 0.0]);
    Ok(())
}

#[test]
fn serde_round_trip() -> std::result::Result<(), serde_json::Error> {
    let init = Init::rescaled(
        Init::KaimingUniform { mode: FanMode::FanOut, nonlinearity: Nonlinearity::LeakyRelu { slope: 0.1 } },
        Rescale::MaxSingularValue(1.0),
    );
    let s = serde_json::to_string(&init)?;
    assert_eq!(serde_json::from_str::<Init>(&s)?, init);
    assert_eq!(serde_json::to_string(&Init::LeCunNormal)?, r#""le_cun_normal""#);
    let parsed: Init = serde_json::from_str(r#"{"xavier_uniform":{"gain":1.0}}"#)?;
    assert_eq!(parsed, Init::XavierUniform { gain: 1.0 });
    // name() agrees with the serialised tag for every variant.
    let all = [
        Init::Zeros,
        Init::Constant { value: 1.0 },
        Init::Uniform { low: 0.0, high: 1.0 },
        Init::Normal { mean: 0.0, std: 1.0 },
        Init::XavierUniform { gain: 1.0 },
        Init::XavierNormal { gain: 1.0 },
        Init::KaimingUniform { mode: FanMode::FanIn, nonlinearity: Nonlinearity::Relu },
        Init::KaimingNormal { mode: FanMode::FanIn, nonlinearity: Nonlinearity::Relu },
        Init::LeCunUniform,
        Init::LeCunNormal,
        Init::Orthogonal { gain: 1.0 },
        Init::Identity { scale: 1.0 },
        Init::Sparse { n_nonzero: 1, std: 1.0 },
        init,
    ];
    for i in &all {
        let s = serde_json::to_string(i)?;
        assert!(s.starts_with(&format!("\"{}", i.name())) || s.starts_with(&format!("{{\"{}\"", i.name())), "{s}");
    }
    Ok(())
}

// ---- every Err path ----

fn is_config<T: std::fmt::Debug>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::Config { .. }))
}

#[test]
fn validate_rejects_each_bad_hyper_parameter() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let bad = [
        Init::Constant { value: nan },
        Init::Uniform { low: 1.0, high: 1.0 },
        Init::Uniform { low: 2.0, high: 1.0 },
        Init::Uniform { low: nan, high: 1.0 },
        Init::Uniform { low: 0.0, high: inf },
        Init::Uniform { low: -f64::MAX, high: f64::MAX },
        Init::Normal { mean: 0.0, std: -0.1 },
        Init::Normal { mean: nan, std: 1.0 },
        Init::Normal { mean: 0.0, std: inf },
        Init::XavierUniform { gain: nan },
        Init::XavierUniform { gain: -1.0 },
        Init::XavierNormal { gain: inf },
        Init::KaimingUniform { mode: FanMode::FanIn, nonlinearity: Nonlinearity::LeakyRelu { slope: nan } },
        Init::KaimingNormal { mode: FanMode::FanOut, nonlinearity: Nonlinearity::LeakyRelu { slope: inf } },
        Init::Orthogonal { gain: nan },
        Init::Identity { scale: inf },
        Init::Sparse { n_nonzero: 0, std: 1.0 },
        Init::Sparse { n_nonzero: 2, std: -1.0 },
        Init::rescaled(Init::Zeros, Rescale::SpectralRadius(0.0)),
        Init::rescaled(Init::Zeros, Rescale::MaxSingularValue(-1.0)),
        Init::rescaled(Init::Zeros, Rescale::SpectralRadius(nan)),
        Init::rescaled(Init::Normal { mean: 0.0, std: -1.0 }, Rescale::SpectralRadius(1.0)),
    ];
    for init in &bad {
        let v = init.validate();
        assert!(is_config(&v), "{init:?}: {v:?}");
        // Every entry point validates first.
        let mut rng = seeded_rng(0);
        assert!(is_config(&init.array2::<f64>(4, 4, &mut rng)), "{init:?}");
        assert!(is_config(&init.array1::<f64>(4, &mut rng)), "{init:?}");
        assert!(is_config(&init.packed::<f32>(2, 4, 4, &mut rng)), "{init:?}");
    }
}

#[test]
fn negative_std_is_rejected() {
    let e = Init::Normal { mean: 0.0, std: -1.0 }.array2::<f32>(3, 3, &mut seeded_rng(0));
    let msg = e.map(|_| ()).unwrap_err_or_default();
    assert!(msg.contains("Init::Normal") && msg.contains("std"), "{msg}");
}

#[test]
fn non_finite_gain_is_rejected() {
    let e = Init::XavierUniform { gain: f64::NAN }.array2::<f32>(3, 3, &mut seeded_rng(0));
    assert!(is_config(&e), "{e:?}");
}

#[test]
fn zero_size_shapes_are_rejected_naming_op_and_shape() {
    let mut rng = seeded_rng(0);
    let init = Init::XavierUniform { gain: 1.0 };
    let msg = init.array2::<f32>(0, 5, &mut rng).map(|_| ()).unwrap_err_or_default();
    assert!(msg.contains("Init::array2") && msg.contains("[0, 5]") && msg.contains("xavier_uniform"), "{msg}");
    assert!(is_config(&init.array2::<f32>(5, 0, &mut rng)));
    let msg = Init::Zeros.array1::<f64>(0, &mut rng).map(|_| ()).unwrap_err_or_default();
    assert!(msg.contains("Init::array1") && msg.contains("[0]"), "{msg}");
    for (b, r, c) in [(0, 3, 3), (3, 0, 3), (3, 3, 0)] {
        let e = Init::Zeros.packed::<f32>(b, r, c, &mut rng);
        assert!(is_config(&e), "{e:?}");
    }
    let msg = Init::Zeros.packed::<f32>(4, 0, 3, &mut rng).map(|_| ()).unwrap_err_or_default();
    assert!(msg.contains("Init::packed") && msg.contains("[4, 0, 3]"), "{msg}");
}

#[test]
fn overflowing_shapes_are_rejected() {
    let mut rng = seeded_rng(0);
    assert!(is_config(&Init::Zeros.array2::<f32>(usize::MAX, 2, &mut rng)));
    assert!(is_config(&Init::Zeros.array2::<f32>(1 << 40, 1 << 30, &mut rng)));
    assert!(is_config(&Init::Zeros.packed::<f32>(usize::MAX, 2, 1, &mut rng)));
}

#[test]
fn array1_rejects_matrix_kinds() {
    let mut rng = seeded_rng(0);
    let matrix_kinds = [
        Init::XavierUniform { gain: 1.0 },
        Init::XavierNormal { gain: 1.0 },
        Init::KaimingUniform { mode: FanMode::FanIn, nonlinearity: Nonlinearity::Relu },
        Init::KaimingNormal { mode: FanMode::FanIn, nonlinearity: Nonlinearity::Relu },
        Init::LeCunUniform,
        Init::LeCunNormal,
        Init::Orthogonal { gain: 1.0 },
        Init::Identity { scale: 1.0 },
        Init::Sparse { n_nonzero: 1, std: 1.0 },
        Init::rescaled(Init::Normal { mean: 0.0, std: 1.0 }, Rescale::MaxSingularValue(1.0)),
    ];
    for init in &matrix_kinds {
        let e = init.array1::<f64>(8, &mut rng);
        assert!(is_config(&e), "{}: {e:?}", init.name());
    }
}

#[test]
fn sparse_needs_enough_columns() {
    let init = Init::Sparse { n_nonzero: 6, std: 1.0 };
    assert!(is_config(&init.array2::<f64>(10, 5, &mut seeded_rng(0))));
    assert!(is_config(&init.packed::<f64>(4, 10, 5, &mut seeded_rng(0))));
    assert!(init.array2::<f64>(10, 6, &mut seeded_rng(0)).is_ok());
}

#[test]
fn rescale_errors_propagate() {
    let mut rng = seeded_rng(0);
    // A zero matrix has ρ = σ₁ = 0: nothing to scale.
    let zero = Init::rescaled(Init::Zeros, Rescale::SpectralRadius(1.0));
    assert!(is_config(&zero.array2::<f64>(4, 4, &mut rng)));
    assert!(is_config(&zero.packed::<f64>(4, 4, 4, &mut rng)));
    let zero_sv = Init::rescaled(Init::Zeros, Rescale::MaxSingularValue(1.0));
    assert!(is_config(&zero_sv.array2::<f64>(4, 3, &mut rng)));
    // Spectral radius of a non-square matrix or block is a shape error.
    let rho = Init::rescaled(Init::Normal { mean: 0.0, std: 1.0 }, Rescale::SpectralRadius(1.0));
    assert!(matches!(rho.array2::<f64>(4, 3, &mut rng), Err(Error::Shape { .. })));
    assert!(matches!(rho.packed::<f64>(4, 4, 3, &mut rng), Err(Error::Shape { .. })));
}

#[test]
fn values_not_finite_in_f32_are_rejected() {
    // a parameter that overflows f32 is a config error naming it, before anything is drawn
    let init = Init::Constant { value: 1e300 };
    let mut rng = seeded_rng(0);
    assert!(init.array2::<f64>(2, 2, &mut rng).is_ok());
    for r in [
        init.array2::<f32>(2, 2, &mut rng),
        init.array1::<f32>(2, &mut rng).map(|a| a.insert_axis(Axis(0))),
        init.packed::<f32>(2, 2, 2, &mut rng),
    ] {
        let e = r.unwrap_err();
        assert!(
            matches!(e, Error::Config { .. })
                && e.to_string().contains("value must be finite, got 1e300 (it overflows f32)"),
            "{e}"
        );
    }
    let target = Init::rescaled(Init::Orthogonal { gain: 1.0 }, Rescale::MaxSingularValue(1e39));
    assert!(target.array2::<f64>(3, 3, &mut rng).is_ok());
    let e = target.array2::<f32>(3, 3, &mut rng).unwrap_err().to_string();
    assert!(e.contains("Init::Rescaled") && e.contains("target must be finite, got 1e39"), "{e}");
    let gain = Init::XavierUniform { gain: 1e39 };
    assert!(gain.array2::<f32>(3, 3, &mut rng).unwrap_err().to_string().contains("gain"));
    // finite parameters whose draws overflow f32 are caught after the draw
    let wide = Init::Normal { mean: 3e38, std: 1e38 };
    assert!(matches!(wide.array2::<f32>(8, 8, &mut rng), Err(Error::NonFinite { .. })));
}

#[test]
fn sizes_over_the_limit_are_refused_before_the_draw() {
    let mut rng = seeded_rng(0);
    let e = Init::Zeros.array2::<f32>(1 << 20, 1 << 20, &mut rng).unwrap_err().to_string();
    assert!(e.contains("over the limit"), "{e}");
    let e = Init::Zeros.packed::<f32>(4, usize::MAX / 2, 3, &mut rng).unwrap_err().to_string();
    assert!(e.contains("overflows"), "{e}");
}

#[test]
fn serde_refuses_unknown_fields_and_array_forms() {
    let ok = [
        r#""zeros""#,
        r#"{"orthogonal": {"gain": 1.0}}"#,
        r#"{"rescaled": {"base": {"orthogonal": {"gain": 1.0}}, "target": {"spectral_radius": 0.9}}}"#,
    ];
    for json in ok {
        assert!(serde_json::from_str::<Init>(json).is_ok(), "{json}");
    }
    let bad = [
        r#"{"orthogonal": {"gain": 1.0, "gian": 2.0}}"#,
        r#"{"orthogonal": [1.0]}"#,
        r#"{"uniform": [-1.0, 1.0]}"#,
        r#"{"rescaled": {"base": {"orthogonal": [1.0]}, "target": {"spectral_radius": 0.9}}}"#,
        r#"{"rescaled": [{"orthogonal": {"gain": 1.0}}, {"spectral_radius": 0.9}]}"#,
    ];
    for json in bad {
        assert!(serde_json::from_str::<Init>(json).is_err(), "{json}");
    }
}

/// The message of an `Err`, or "" for `Ok` (so the assertion on the message fails).
trait ErrMessage {
    fn unwrap_err_or_default(self) -> String;
}

impl ErrMessage for Result<()> {
    fn unwrap_err_or_default(self) -> String {
        self.err().map(|e| e.to_string()).unwrap_or_default()
    }
}
