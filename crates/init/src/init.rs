//! The initialiser data enum and its entry points: matrices, bias vectors and packed gate blocks.

use ndarray::{Array1, Array2, s};
use rand::Rng as _;
use rand::distr::Uniform;
use rand_distr::StandardNormal;
use rnnlab_core::{Error, Float, Result, Rng, limits, validate};
use serde::{Deserialize, Serialize};

use crate::orthogonal::orthogonal;
use crate::{FanMode, Nonlinearity, Rescale, gain};

/// A weight initialiser, as data: serialisable into an experiment file.
///
/// Fans always come from the shape being initialised: for a weight `[rows, cols] = [out, in]`
/// (PyTorch's layout, `y = W x`), `fan_in = cols` and `fan_out = rows`. There is no optional
/// fan that could be missing. All draws are made in f64 in row-major order and then converted
/// with [`Float::of`], so `f32` and `f64` arrays from the same seed hold the same draws.
///
/// | variant | distribution |
/// |---|---|
/// | `Zeros`, `Constant { value }` | 0, `value` |
/// | `Uniform { low, high }` | U(low, high), Var = (high − low)²/12 |
/// | `Normal { mean, std }` | N(mean, std²) |
/// | `XavierUniform { gain }` | U(−a, a), a = gain·√(6/(fan_in + fan_out)) |
/// | `XavierNormal { gain }` | N(0, σ²), σ = gain·√(2/(fan_in + fan_out)) |
/// | `KaimingUniform { mode, nonlinearity }` | U(−b, b), b = gain(nonlinearity)·√(3/fan) |
/// | `KaimingNormal { mode, nonlinearity }` | N(0, σ²), σ = gain(nonlinearity)/√fan |
/// | `LeCunUniform` | U(−b, b), b = √(3/fan_in) |
/// | `LeCunNormal` | N(0, σ²), σ = √(1/fan_in) |
/// | `Orthogonal { gain }` | gain·Q, Q Haar-orthogonal (orthonormal rows or columns) |
/// | `Identity { scale }` | scale·I (ones on the main diagonal of a rectangular shape) |
/// | `Sparse { n_nonzero, std }` | per row, `n_nonzero` entries from N(0, std²), rest 0 |
/// | `Rescaled { base, target }` | `base`, then scaled to ρ(W) or σ₁(W) = target |
///
/// `fan` is `fan_in` or `fan_out` per [`FanMode`]; `gain(…)` is [`crate::gain`].
///
/// # Examples
/// ```
/// use rnnlab_init::{FanMode, Init, Nonlinearity};
/// let init = Init::KaimingUniform { mode: FanMode::FanIn, nonlinearity: Nonlinearity::Relu };
/// let w = init.array2::<f32>(64, 32, &mut rnnlab_core::seeded_rng(0))?;
/// let bound = (2.0f32).sqrt() * (3.0f32 / 32.0).sqrt();
/// assert!(w.iter().all(|x| x.abs() <= bound));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// Every entry equal to `value`.
    Constant {
        /// The value.
        value: f64,
    },
    /// U(low, high): Var = (high − low)²/12.
    Uniform {
        /// Inclusive lower bound.
        low: f64,
        /// Exclusive upper bound, > `low`.
        high: f64,
    },
    /// N(mean, std²).
    Normal {
        /// The mean.
        mean: f64,
        /// The standard deviation, ≥ 0.
        std: f64,
    },
    /// Glorot & Bengio (2010), eq. 16: U(−a, a) with a = gain·√(6/(fan_in + fan_out)),
    /// so Var = gain²·2/(fan_in + fan_out), the compromise between keeping the forward and the
    /// backward variance.
    XavierUniform {
        /// The gain, finite and ≥ 0 (1 for linear or tanh-like units as in the paper).
        gain: f64,
    },
    /// Glorot & Bengio (2010) with a normal: N(0, σ²), σ = gain·√(2/(fan_in + fan_out)).
    XavierNormal {
        /// The gain, finite and ≥ 0.
        gain: f64,
    },
    /// He et al. (2015): U(−b, b) with b = gain·√(3/fan), Var = gain²/fan
    /// (= 2/fan_in for relu with [`FanMode::FanIn`]).
    KaimingUniform {
        /// Which fan to preserve.
        mode: FanMode,
        /// The nonlinearity that fixes the gain.
        nonlinearity: Nonlinearity,
    },
    /// He et al. (2015): N(0, σ²) with σ = gain/√fan.
    KaimingNormal {
        /// Which fan to preserve.
        mode: FanMode,
        /// The nonlinearity that fixes the gain.
        nonlinearity: Nonlinearity,
    },
    /// LeCun et al. (1998), "Efficient BackProp" §4.6, uniform: U(−b, b), b = √(3/fan_in),
    /// Var = 1/fan_in.
    LeCunUniform,
    /// LeCun et al. (1998), normal: N(0, 1/fan_in).
    LeCunNormal,
    /// Saxe et al. (2013): gain·Q with Q a random orthogonal matrix: all singular values equal
    /// gain, so a linear recurrence neither grows nor shrinks any direction. Q is the Q factor
    /// of a Gaussian matrix (Householder QR in f64, columns multiplied by sign(diag R) as in
    /// PyTorch's `orthogonal_`); rows ≤ cols gives orthonormal rows (Q Qᵀ = I), rows ≥ cols
    /// orthonormal columns (QᵀQ = I).
    Orthogonal {
        /// The gain, finite and ≥ 0.
        gain: f64,
    },
    /// Le et al. (2015), IRNN: scale·I; on a rectangular shape, `scale` on the main diagonal
    /// and 0 elsewhere (PyTorch's `eye_`). Draws nothing from the generator.
    Identity {
        /// The diagonal value, finite.
        scale: f64,
    },
    /// Sparse initialisation (Martens 2010; cf. Pascanu et al. 2013 for recurrent weights): each
    /// unit (row) gets exactly `n_nonzero` incoming
    /// weights, at distinct random columns, drawn from N(0, std²); the rest are 0. Usually
    /// combined with [`Init::Rescaled`] to set the spectral radius.
    Sparse {
        /// Non-zero entries per row, ≥ 1 and ≤ cols (checked against the shape).
        n_nonzero: usize,
        /// Standard deviation of the non-zero entries, ≥ 0.
        std: f64,
    },
    /// `base`, then multiplied by one scalar so that its spectral radius or largest singular
    /// value equals the target (see [`Rescale`]). In [`Init::packed`] each block is rescaled
    /// on its own.
    Rescaled {
        /// The initialiser drawn first.
        base: Box<Init>,
        /// The quantity to fix and its value.
        target: Rescale,
    },
}
rnnlab_core::serde_struct_variants_as_maps!(Init);

impl Init {
    /// [`Init::Rescaled`] of `base` to `target`.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_init::{Init, Rescale};
    /// let init = Init::rescaled(Init::Orthogonal { gain: 1.0 }, Rescale::MaxSingularValue(1.1));
    /// assert_eq!(init.name(), "rescaled");
    /// ```
    pub fn rescaled(base: Init, target: Rescale) -> Self {
        Init::Rescaled { base: Box::new(base), target }
    }

    /// The snake-case name of the variant, as in the serialised form.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(rnnlab_init::Init::LeCunNormal.name(), "le_cun_normal");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Init::Zeros => "zeros",
            Init::Constant { .. } => "constant",
            Init::Uniform { .. } => "uniform",
            Init::Normal { .. } => "normal",
            Init::XavierUniform { .. } => "xavier_uniform",
            Init::XavierNormal { .. } => "xavier_normal",
            Init::KaimingUniform { .. } => "kaiming_uniform",
            Init::KaimingNormal { .. } => "kaiming_normal",
            Init::LeCunUniform => "le_cun_uniform",
            Init::LeCunNormal => "le_cun_normal",
            Init::Orthogonal { .. } => "orthogonal",
            Init::Identity { .. } => "identity",
            Init::Sparse { .. } => "sparse",
            Init::Rescaled { .. } => "rescaled",
        }
    }

    /// Checks the hyper-parameters, independent of any shape.
    ///
    /// # Errors
    /// [`Error::Config`] if: `Constant` value, `Uniform` bounds, `Normal` mean, `Identity` scale
    /// are not finite; `Uniform` has low ≥ high or an infinite width; a `Normal` or `Sparse` std is
    /// negative or not finite; a Xavier or orthogonal gain is negative or not finite; a Kaiming
    /// leaky-relu slope is not finite; `Sparse` has `n_nonzero` = 0; a `Rescaled` target is not
    /// finite and > 0, or its base is invalid.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_init::Init;
    /// assert!(Init::Normal { mean: 0.0, std: 0.1 }.validate().is_ok());
    /// assert!(Init::Normal { mean: 0.0, std: -0.1 }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        match self {
            Init::Zeros | Init::LeCunUniform | Init::LeCunNormal => Ok(()),
            Init::Constant { value } => validate::finite_param("Init::Constant", "value", *value),
            Init::Uniform { low, high } => {
                const OP: &str = "Init::Uniform";
                validate::finite_param(OP, "low", *low)?;
                validate::finite_param(OP, "high", *high)?;
                if low >= high {
                    return Err(Error::config(OP, format!("low must be < high, got low = {low}, high = {high}")));
                }
                if !(high - low).is_finite() {
                    return Err(Error::config(OP, format!("high - low must be finite, got {low}..{high}")));
                }
                Ok(())
            }
            Init::Normal { mean, std } => {
                validate::finite_param("Init::Normal", "mean", *mean)?;
                validate::non_negative_param("Init::Normal", "std", *std)
            }
            Init::XavierUniform { gain } => validate::non_negative_param("Init::XavierUniform", "gain", *gain),
            Init::XavierNormal { gain } => validate::non_negative_param("Init::XavierNormal", "gain", *gain),
            Init::KaimingUniform { nonlinearity, .. } | Init::KaimingNormal { nonlinearity, .. } => {
                gain(*nonlinearity).map(|_| ())
            }
            Init::Orthogonal { gain } => validate::non_negative_param("Init::Orthogonal", "gain", *gain),
            Init::Identity { scale } => validate::finite_param("Init::Identity", "scale", *scale),
            Init::Sparse { n_nonzero, std } => {
                validate::positive_size("Init::Sparse", "n_nonzero", *n_nonzero)?;
                validate::non_negative_param("Init::Sparse", "std", *std)
            }
            Init::Rescaled { base, target } => {
                base.validate()?;
                target.validate()
            }
        }
    }

    /// [`Init::validate`], then the same values converted to `F`: a value finite in `f64` may
    /// be ∞ in `f32` (a gain, a constant or a rescale target of 1e39).
    ///
    /// # Errors
    /// As [`Init::validate`], and [`Error::Config`] naming the value that is not finite (or,
    /// for a rescale target, not `> 0`) in `F`.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_init::{Init, Rescale};
    /// let init = Init::rescaled(Init::Orthogonal { gain: 1.0 }, Rescale::SpectralRadius(1e39));
    /// assert!(init.validate_in::<f64>().is_ok());
    /// assert!(init.validate_in::<f32>().is_err());
    /// ```
    pub fn validate_in<F: Float>(&self) -> Result<()> {
        self.validate()?;
        let finite = |op: &str, name: &str, v: f64| validate::finite_in::<F>(op, name, v).map(drop);
        match self {
            Init::Constant { value } => finite("Init::Constant", "value", *value),
            Init::Uniform { low, high } => {
                finite("Init::Uniform", "low", *low)?;
                finite("Init::Uniform", "high", *high)
            }
            Init::Normal { mean, std } => {
                finite("Init::Normal", "mean", *mean)?;
                finite("Init::Normal", "std", *std)
            }
            Init::XavierUniform { gain } | Init::XavierNormal { gain } | Init::Orthogonal { gain } => {
                finite(&format!("Init::{}", self.name()), "gain", *gain)
            }
            Init::Identity { scale } => finite("Init::Identity", "scale", *scale),
            Init::Sparse { std, .. } => finite("Init::Sparse", "std", *std),
            Init::Rescaled { base, target } => {
                base.validate_in::<F>()?;
                validate::positive_in::<F>("Init::Rescaled", "target", target.target()).map(drop)
            }
            Init::Zeros
            | Init::LeCunUniform
            | Init::LeCunNormal
            | Init::KaimingUniform { .. }
            | Init::KaimingNormal { .. } => Ok(()),
        }
    }

    /// A `[rows, cols]` weight matrix (`[out, in]`, so `fan_in = cols`, `fan_out = rows`).
    ///
    /// # Shapes
    /// Returns `[rows, cols]`.
    ///
    /// # Errors
    /// - Everything [`Init::validate`] rejects.
    /// - [`Error::Config`] if `rows` or `cols` is 0 or `rows·cols` overflows; for `Sparse` if
    ///   `n_nonzero > cols`; for `Rescaled` if the drawn matrix has a zero spectral radius or
    ///   singular value (e.g. `Zeros` or a nilpotent matrix).
    /// - [`Error::Shape`] for `Rescaled` with [`Rescale::SpectralRadius`] on a non-square shape.
    /// - [`Error::NonFinite`] if a drawn value is not finite in `F` (e.g. a `Constant` of 1e300
    ///   as `f32`).
    ///
    /// # Examples
    /// ```
    /// use rnnlab_init::Init;
    /// let w = Init::Orthogonal { gain: 1.0 }.array2::<f64>(3, 5, &mut rnnlab_core::seeded_rng(1))?;
    /// let wwt = w.dot(&w.t());
    /// assert!((wwt[[1, 1]] - 1.0).abs() < 1e-12 && wwt[[0, 2]].abs() < 1e-12);
    /// assert!(Init::Zeros.array2::<f32>(0, 5, &mut rnnlab_core::seeded_rng(1)).is_err());
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn array2<F: Float>(&self, rows: usize, cols: usize, rng: &mut Rng) -> Result<Array2<F>> {
        const OP: &str = "Init::array2";
        self.validate_in::<F>()?;
        check_shape(OP, self.name(), &[rows, cols])?;
        let a = self.draw(rows, cols, rng)?;
        convert(OP, &a)
    }

    /// A length-`n` vector, for biases and gains.
    ///
    /// Only the element-wise kinds (`Zeros`, `Constant`, `Uniform`, `Normal`) are accepted: the
    /// fan-based kinds (Xavier, Kaiming, LeCun) return `Err` rather than invent fans for a
    /// vector (as PyTorch, which refuses fans of a 1-D tensor), and the matrix kinds
    /// (`Orthogonal`, `Identity`, `Sparse`, `Rescaled`) have no meaning for one. The draws are
    /// those of `array2(1, n)`.
    ///
    /// # Shapes
    /// Returns `[n]`.
    ///
    /// # Errors
    /// - Everything [`Init::validate`] rejects.
    /// - [`Error::Config`] if `n` is 0 or the kind is not element-wise.
    /// - [`Error::NonFinite`] if a drawn value is not finite in `F`.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_init::Init;
    /// let b = Init::Constant { value: 1.0 }.array1::<f32>(4, &mut rnnlab_core::seeded_rng(0))?;
    /// assert_eq!(b.len(), 4);
    /// assert!(Init::LeCunNormal.array1::<f32>(4, &mut rnnlab_core::seeded_rng(0)).is_err());
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn array1<F: Float>(&self, n: usize, rng: &mut Rng) -> Result<Array1<F>> {
        const OP: &str = "Init::array1";
        self.validate_in::<F>()?;
        check_shape(OP, self.name(), &[n])?;
        match self {
            Init::Zeros | Init::Constant { .. } | Init::Uniform { .. } | Init::Normal { .. } => {}
            _ => {
                return Err(Error::config(
                    OP,
                    format!(
                        "{} needs a matrix shape (fans or a matrix structure); a vector takes zeros, constant, uniform or normal",
                        self.name()
                    ),
                ));
            }
        }
        let a = self.draw(1, n, rng)?;
        Ok(convert(OP, &a)?.into_iter().collect())
    }

    /// `n_blocks` gate blocks stacked along rows: `[n_blocks·block_rows, cols]`, each
    /// `[block_rows, cols]` block initialised INDEPENDENTLY, with fans from the block shape
    /// (`fan_in = cols`, `fan_out = block_rows`) and any rescale applied per block.
    ///
    /// This is the layout of packed recurrent weights (an LSTM's `w_hh` is `[4H, H]`, a GRU's
    /// `[3H, H]`). Initialising the packed matrix as one `[4H, H]` matrix is a common bug: an
    /// orthogonal `[4H, H]` matrix has orthonormal columns overall, so each H×H gate block is
    /// far from orthogonal (its QᵀQ averages I/4), and Xavier or Kaiming would use the wrong fans.
    /// Blocks are drawn in order, block 0 first.
    ///
    /// # Shapes
    /// Returns `[n_blocks·block_rows, cols]`; block `k` is rows `k·block_rows..(k+1)·block_rows`.
    ///
    /// # Errors
    /// - Everything [`Init::validate`] rejects.
    /// - [`Error::Config`] if `n_blocks`, `block_rows` or `cols` is 0 or the size overflows, and
    ///   the per-block errors of [`Init::array2`] (sparse `n_nonzero > cols`, zero spectral radius).
    /// - [`Error::Shape`] for a spectral-radius rescale of non-square blocks.
    /// - [`Error::NonFinite`] if a drawn value is not finite in `F`.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_init::Init;
    /// let h = 8;
    /// let w_hh = Init::Orthogonal { gain: 1.0 }.packed::<f64>(4, h, h, &mut rnnlab_core::seeded_rng(0))?;
    /// assert_eq!(w_hh.dim(), (4 * h, h));
    /// let gate = w_hh.slice(ndarray::s![2 * h..3 * h, ..]);
    /// let qtq = gate.t().dot(&gate);
    /// assert!((qtq[[3, 3]] - 1.0).abs() < 1e-12 && qtq[[3, 4]].abs() < 1e-12);
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn packed<F: Float>(
        &self,
        n_blocks: usize,
        block_rows: usize,
        cols: usize,
        rng: &mut Rng,
    ) -> Result<Array2<F>> {
        const OP: &str = "Init::packed";
        self.validate_in::<F>()?;
        check_shape(OP, self.name(), &[n_blocks, block_rows, cols])?;
        // Cannot overflow: check_shape bounded n_blocks·block_rows·cols.
        let mut out = Array2::<f64>::zeros((n_blocks * block_rows, cols));
        for k in 0..n_blocks {
            let block = self.draw(block_rows, cols, rng)?;
            // Cannot panic: `block` is [block_rows, cols], the slice's shape.
            out.slice_mut(s![k * block_rows..(k + 1) * block_rows, ..]).assign(&block);
        }
        convert(OP, &out)
    }

    /// Draws a `[rows, cols]` matrix in f64; `self` is validated and the shape non-empty.
    fn draw(&self, rows: usize, cols: usize, rng: &mut Rng) -> Result<Array2<f64>> {
        let (fan_in, fan_out) = (cols as f64, rows as f64);
        let fan = |mode: &FanMode| mode.fan(rows, cols) as f64;
        Ok(match self {
            Init::Zeros => Array2::zeros((rows, cols)),
            Init::Constant { value } => Array2::from_elem((rows, cols), *value),
            Init::Uniform { low, high } => uniform(self.name(), rows, cols, *low, *high, rng)?,
            Init::Normal { mean, std } => normal(rows, cols, *mean, *std, rng),
            Init::XavierUniform { gain } => {
                symmetric_uniform(self.name(), rows, cols, gain * (6.0 / (fan_in + fan_out)).sqrt(), rng)?
            }
            Init::XavierNormal { gain } => normal(rows, cols, 0.0, gain * (2.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::KaimingUniform { mode, nonlinearity } => {
                let bound = gain(*nonlinearity)? * (3.0 / fan(mode)).sqrt();
                symmetric_uniform(self.name(), rows, cols, bound, rng)?
            }
            Init::KaimingNormal { mode, nonlinearity } => {
                normal(rows, cols, 0.0, gain(*nonlinearity)? / fan(mode).sqrt(), rng)
            }
            Init::LeCunUniform => symmetric_uniform(self.name(), rows, cols, (3.0 / fan_in).sqrt(), rng)?,
            Init::LeCunNormal => normal(rows, cols, 0.0, (1.0 / fan_in).sqrt(), rng),
            Init::Orthogonal { gain } => orthogonal(rows, cols, *gain, rng),
            Init::Identity { scale } => Array2::from_shape_fn((rows, cols), |(i, j)| if i == j { *scale } else { 0.0 }),
            Init::Sparse { n_nonzero, std } => {
                if *n_nonzero > cols {
                    return Err(Error::config(
                        "Init::Sparse",
                        format!(
                            "n_nonzero = {n_nonzero} exceeds the {cols} columns (fan_in) of a [{rows}, {cols}] matrix"
                        ),
                    ));
                }
                let mut a = Array2::zeros((rows, cols));
                for mut row in a.rows_mut() {
                    // Cannot panic: n_nonzero ≤ cols was checked above.
                    for j in rand::seq::index::sample(rng, cols, *n_nonzero) {
                        row[j] = std * rng.sample::<f64, _>(StandardNormal);
                    }
                }
                a
            }
            Init::Rescaled { base, target } => {
                let mut a = base.draw(rows, cols, rng)?;
                target.apply(&mut a)?;
                a
            }
        })
    }
}

/// `Err(Config)` if a dimension is 0, or the element count overflows or is over
/// [`limits::MAX_ELEMENTS`] (checked before the draw allocates).
fn check_shape(op: &str, name: &str, dims: &[usize]) -> Result<()> {
    if dims.contains(&0) {
        return Err(Error::config(
            op,
            format!("cannot initialise a {dims:?} array with {name}: every dimension must be >= 1"),
        ));
    }
    limits::checked_elements(op, &format!("the shape initialised with {name}"), dims).map(drop)
}

/// U(low, high) of shape `[rows, cols]`, row-major.
fn uniform(name: &str, rows: usize, cols: usize, low: f64, high: f64, rng: &mut Rng) -> Result<Array2<f64>> {
    let dist = Uniform::new(low, high)
        .map_err(|e| Error::config(format!("Init::{name}"), format!("bad uniform range {low}..{high}: {e}")))?;
    Ok(Array2::from_shape_simple_fn((rows, cols), || rng.sample(dist)))
}

/// U(−bound, bound); all zeros when `bound` is 0 (a zero gain).
fn symmetric_uniform(name: &str, rows: usize, cols: usize, bound: f64, rng: &mut Rng) -> Result<Array2<f64>> {
    if bound == 0.0 {
        return Ok(Array2::zeros((rows, cols)));
    }
    uniform(name, rows, cols, -bound, bound, rng)
}

/// N(mean, std²) of shape `[rows, cols]`, row-major.
fn normal(rows: usize, cols: usize, mean: f64, std: f64, rng: &mut Rng) -> Array2<f64> {
    Array2::from_shape_simple_fn((rows, cols), || mean + std * rng.sample::<f64, _>(StandardNormal))
}

/// Converts to `F`, rejecting values that are not finite there.
fn convert<F: Float>(op: &str, a: &Array2<f64>) -> Result<Array2<F>> {
    let out = a.mapv(F::of);
    validate::finite_values(op, "initialised values", out.iter().copied())?;
    Ok(out)
}

#[cfg(test)]
mod tests;
