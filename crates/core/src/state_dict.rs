//! Parameters by name: [`StateDict`] (an ordered map name → array, PyTorch's `state_dict`) and
//! the get/set/export/import that every [`Parameterized`] gets as provided methods.

use std::fmt;

use ndarray::{ArrayD, ArrayViewD};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Float, Parameterized, Result, validate};

/// How many names an error message lists before it says "… (N in all)".
pub const MAX_LISTED_NAMES: usize = 16;

/// An ordered map from parameter names to arrays: the export/import format of
/// [`Parameterized::state_dict`] and [`Parameterized::load_state_dict`], like PyTorch's
/// `state_dict`.
///
/// Entries keep their insertion order (a model's visiting order when it comes from
/// [`Parameterized::state_dict`]); names are unique. Serialises as a map `name → array` in
/// that order (ndarray's serde form `{"v": 1, "dim": […], "data": […]}`); deserialising
/// refuses a repeated name. Lookups are linear (a model has tens to hundreds of parameters).
///
/// # Examples
/// ```
/// use ndarray::{ArrayD, IxDyn};
/// use rnnlab_core::StateDict;
/// let mut d = StateDict::<f32>::new();
/// d.insert("w", ArrayD::zeros(IxDyn(&[2, 3])));
/// d.insert("b", ArrayD::zeros(IxDyn(&[2])));
/// assert_eq!(d.names().collect::<Vec<_>>(), ["w", "b"]);
/// assert_eq!(d.get("b").map(|a| a.shape().to_vec()), Some(vec![2]));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct StateDict<F> {
    entries: Vec<(String, ArrayD<F>)>,
}

impl<F> Default for StateDict<F> {
    fn default() -> Self {
        Self { entries: Vec::new() }
    }
}

impl<F: Float> StateDict<F> {
    /// An empty state dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `value` under `name`: a new name goes last, an existing one is replaced in
    /// place and its old value returned.
    pub fn insert(&mut self, name: impl Into<String>, value: ArrayD<F>) -> Option<ArrayD<F>> {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((name, value));
                None
            }
        }
    }

    /// The array under `name`.
    pub fn get(&self, name: &str) -> Option<&ArrayD<F>> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The array under `name`, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut ArrayD<F>> {
        self.entries.iter_mut().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Removes and returns the array under `name` (the others keep their order).
    pub fn remove(&mut self, name: &str) -> Option<ArrayD<F>> {
        let i = self.entries.iter().position(|(n, _)| n == name)?;
        Some(self.entries.remove(i).1)
    }

    /// Whether there is an entry `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// `(name, array)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ArrayD<F>)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// The entries, in order.
    pub fn into_vec(self) -> Vec<(String, ArrayD<F>)> {
        self.entries
    }

    /// The same arrays under new names `rename(name)` (e.g. [`crate::from_torch`]), in the same order.
    ///
    /// # Errors
    /// [`Error::Format`] if two names map to the same new name.
    ///
    /// # Examples
    /// ```
    /// use ndarray::{ArrayD, IxDyn};
    /// use rnnlab_core::{StateDict, from_torch};
    /// let torch: StateDict<f32> = [("weight_ih_l0".to_string(), ArrayD::zeros(IxDyn(&[4, 2])))].into_iter().collect();
    /// let ours = torch.renamed(from_torch)?;
    /// assert!(ours.contains("layers.0.w_ih"));
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn renamed(self, mut rename: impl FnMut(&str) -> String) -> Result<Self> {
        let mut out = Self::new();
        for (name, v) in self.entries {
            let new = rename(&name);
            if out.contains(&new) {
                return Err(Error::format(
                    "StateDict::renamed",
                    format!("two entries are renamed `{new}` (one was `{name}`)"),
                ));
            }
            out.entries.push((new, v));
        }
        Ok(out)
    }

    /// Every array converted to `G` (exact from f32 to f64, rounded to nearest from f64 to f32).
    pub fn cast<G: Float>(&self) -> StateDict<G> {
        StateDict { entries: self.entries.iter().map(|(n, v)| (n.clone(), v.mapv(|x| G::of(x.as_f64())))).collect() }
    }
}

impl<F: Float> FromIterator<(String, ArrayD<F>)> for StateDict<F> {
    /// Collects with [`StateDict::insert`]: a repeated name keeps its first position and its last value.
    fn from_iter<I: IntoIterator<Item = (String, ArrayD<F>)>>(iter: I) -> Self {
        let mut d = Self::new();
        for (n, v) in iter {
            d.insert(n, v);
        }
        d
    }
}

impl<F: Float> Serialize for StateDict<F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (n, v) in &self.entries {
            map.serialize_entry(n, v)?;
        }
        map.end()
    }
}

impl<'de, F: Float> Deserialize<'de> for StateDict<F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Entries<F>(std::marker::PhantomData<F>);
        impl<'de, F: Float> Visitor<'de> for Entries<F> {
            type Value = StateDict<F>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from parameter names to arrays")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut d = StateDict::new();
                while let Some((name, value)) = map.next_entry::<String, ArrayD<F>>()? {
                    if d.contains(&name) {
                        return Err(serde::de::Error::custom(format!("parameter `{name}` appears twice")));
                    }
                    d.entries.push((name, value));
                }
                Ok(d)
            }
        }
        deserializer.deserialize_map(Entries(std::marker::PhantomData))
    }
}

/// Names for an error message: `` `a`, `b`, `c` ``, at most [`MAX_LISTED_NAMES`] of them
/// then `… (N in all)`; `none` for no names.
///
/// # Examples
/// ```
/// assert_eq!(rnnlab_core::list_names(["w", "b"]), "`w`, `b`");
/// assert_eq!(rnnlab_core::list_names([]), "none");
/// ```
pub fn list_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    let shown: Vec<String> = names.iter().take(MAX_LISTED_NAMES).map(|n| format!("`{n}`")).collect();
    let mut s = shown.join(", ");
    if names.len() > MAX_LISTED_NAMES {
        s.push_str(&format!(", … ({} in all)", names.len()));
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

/// `name shape, …` for at most [`MAX_LISTED_NAMES`] entries.
fn list_shapes(items: &[(&str, &[usize])]) -> String {
    let mut s: Vec<String> = items.iter().take(MAX_LISTED_NAMES).map(|(n, sh)| format!("`{n}` {sh:?}")).collect();
    if items.len() > MAX_LISTED_NAMES {
        s.push(format!("… ({} in all)", items.len()));
    }
    s.join(", ")
}

/// [`Parameterized::get_param`].
pub(crate) fn get_param<F: Float, P: Parameterized<F> + ?Sized>(model: &P, name: &str) -> Result<ArrayD<F>> {
    let mut found = None;
    model.visit_params(&mut |n, p| {
        if found.is_none() && n == name {
            found = Some(p.value.to_owned());
        }
    });
    found.ok_or_else(|| unknown(model, "Parameterized::get_param", name))
}

fn unknown<F: Float, P: Parameterized<F> + ?Sized>(model: &P, op: &str, name: &str) -> Error {
    let names = model.param_names();
    Error::config(
        op,
        format!("no parameter named `{name}`; the known names are {}", list_names(names.iter().map(String::as_str))),
    )
}

/// [`Parameterized::set_param`].
pub(crate) fn set_param<F: Float, P: Parameterized<F> + ?Sized>(
    model: &mut P,
    name: &str,
    value: ArrayViewD<'_, F>,
) -> Result<()> {
    const OP: &str = "Parameterized::set_param";
    validate::finite_array(OP, &format!("value for parameter `{name}`"), &value)?;
    let mut outcome: Option<Result<()>> = None;
    model.visit_params_mut(&mut |n, mut p| {
        if outcome.is_some() || n != name {
            return;
        }
        outcome = Some(if p.value.shape() == value.shape() {
            // Same shape: `assign` cannot fail to broadcast.
            p.value.assign(&value);
            Ok(())
        } else {
            Err(Error::shape(OP, format!("parameter `{name}` {:?}", p.value.shape()), format!("{:?}", value.shape())))
        });
    });
    outcome.unwrap_or_else(|| Err(unknown(model, OP, name)))
}

/// [`Parameterized::load_state_dict`].
pub(crate) fn load_state_dict<F: Float, P: Parameterized<F> + ?Sized>(
    model: &mut P,
    dict: &StateDict<F>,
) -> Result<()> {
    const OP: &str = "Parameterized::load_state_dict";
    let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
    model.visit_params(&mut |n, p| expected.push((n.to_string(), p.value.shape().to_vec())));
    // 1. names
    let missing: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).filter(|n| !dict.contains(n)).collect();
    let unexpected: Vec<&str> = dict.names().filter(|n| !expected.iter().any(|(e, _)| e == n)).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(Error::format(
            OP,
            format!(
                "the state dict does not fit: missing {}; unexpected {}; expected {} parameters: {}",
                list_names(missing.iter().copied()),
                list_names(unexpected.iter().copied()),
                expected.len(),
                list_shapes(&expected.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect::<Vec<_>>()),
            ),
        ));
    }
    // 2. shapes (every name is present after step 1)
    let mut want = Vec::new();
    let mut got = Vec::new();
    for (n, shape) in &expected {
        if let Some(v) = dict.get(n)
            && v.shape() != shape.as_slice()
        {
            want.push((n.as_str(), shape.as_slice()));
            got.push((n.as_str(), v.shape()));
        }
    }
    if !want.is_empty() {
        return Err(Error::shape(OP, list_shapes(&want), list_shapes(&got)));
    }
    // 3. values
    for (n, v) in dict.iter() {
        validate::finite_array(OP, &format!("parameter `{n}`"), &v.view())?;
    }
    // 4. write: every name is present with its parameter's shape.
    let mut err = None;
    model.visit_params_mut(&mut |n, mut p| match dict.get(n) {
        Some(v) if v.shape() == p.value.shape() => p.value.assign(v),
        _ => {
            // Only a `Parameterized` whose two visits disagree gets here.
            err.get_or_insert_with(|| {
                Error::format(
                    OP,
                    format!("parameter `{n}` was not visited the same way by visit_params and visit_params_mut"),
                )
            });
        }
    });
    err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Param, ParamView, ParamViewMut};
    use ndarray::{Array1, Array2, IxDyn, array};

    struct Two {
        w: Param<f64, ndarray::Ix2>,
        b: Param<f64, ndarray::Ix1>,
    }

    impl Parameterized<f64> for Two {
        fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, f64>)) {
            v("layers.0.w_ih", self.w.view());
            v("b", self.b.view());
        }
        fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) {
            v("layers.0.w_ih", self.w.view_mut());
            v("b", self.b.view_mut());
        }
    }

    fn two() -> Two {
        Two { w: Param::new(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), b: Param::new(Array1::from(vec![7.0, 8.0])) }
    }

    #[test]
    fn named_params_get_and_set() {
        let mut m = two();
        let named = m.named_params();
        assert_eq!(named.len(), 2);
        assert_eq!(named[0].0, "layers.0.w_ih");
        assert_eq!(named[1].1, array![7.0, 8.0].into_dyn());
        assert_eq!(m.get_param("b").unwrap(), array![7.0, 8.0].into_dyn());
        m.w.grad.fill(3.0);
        m.set_param("layers.0.w_ih", Array2::from_elem((2, 3), 0.5).into_dyn().view()).unwrap();
        assert!(m.w.value.iter().all(|&x| x == 0.5));
        assert!(m.w.grad.iter().all(|&g| g == 3.0), "gradients are left alone");
        // a non-contiguous view is fine
        let t = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        m.set_param("layers.0.w_ih", t.t().into_dyn()).unwrap();
        assert_eq!(m.w.value, array![[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]);
    }

    #[test]
    fn set_param_refuses_bad_input_and_changes_nothing() {
        let mut m = two();
        let e = m.set_param("b", Array1::<f64>::zeros(3).into_dyn().view()).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        assert!(e.to_string().contains("`b` [2]") && e.to_string().contains("[3]"), "{e}");
        let e = m.set_param("b", array![1.0, f64::NAN].into_dyn().view()).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains("flat index 1"), "{e}");
        let e = m.set_param("c", array![1.0].into_dyn().view()).unwrap_err();
        assert!(e.to_string().contains("`c`") && e.to_string().contains("`layers.0.w_ih`, `b`"), "{e}");
        let e = m.get_param("layers.0.w_hh").unwrap_err();
        assert!(e.to_string().contains("known names are `layers.0.w_ih`, `b`"), "{e}");
        assert_eq!(m.b.value, array![7.0, 8.0]);
    }

    #[test]
    fn state_dict_round_trip_and_serde() {
        let a = two();
        let d = a.state_dict();
        assert_eq!(d.names().collect::<Vec<_>>(), ["layers.0.w_ih", "b"]);
        let mut b = Two { w: Param::new(Array2::zeros((2, 3))), b: Param::new(Array1::zeros(2)) };
        b.load_state_dict(&d).unwrap();
        assert_eq!((b.w.value.clone(), b.b.value.clone()), (a.w.value.clone(), a.b.value.clone()));
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.starts_with("{\"layers.0.w_ih\":"), "{json}");
        let back: StateDict<f64> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        let dup = r#"{"b": {"v":1,"dim":[1],"data":[1.0]}, "b": {"v":1,"dim":[1],"data":[2.0]}}"#;
        let e = serde_json::from_str::<StateDict<f64>>(dup).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        // f32 ↔ f64
        let f: StateDict<f32> = d.cast();
        assert_eq!(f.get("b").unwrap()[[0]], 7.0f32);
        assert_eq!(f.cast::<f64>(), d);
    }

    #[test]
    fn load_state_dict_validates_everything_first() {
        let good = two().state_dict();
        let check = |d: StateDict<f64>, kind: fn(&Error) -> bool, words: &[&str]| {
            let mut m = Two { w: Param::new(Array2::zeros((2, 3))), b: Param::new(Array1::zeros(2)) };
            let e = m.load_state_dict(&d).unwrap_err();
            assert!(kind(&e), "{e}");
            for w in words {
                assert!(e.to_string().contains(w), "`{w}` not in {e}");
            }
            assert!(m.w.value.iter().chain(m.b.value.iter()).all(|&x| x == 0.0), "nothing written");
        };
        let mut d = good.clone();
        d.remove("b");
        d.insert("bias", ArrayD::zeros(IxDyn(&[2])));
        check(
            d,
            |e| matches!(e, Error::Format { .. }),
            &["missing `b`", "unexpected `bias`", "`layers.0.w_ih` [2, 3]"],
        );
        let mut d = good.clone();
        d.insert("b", ArrayD::zeros(IxDyn(&[3])));
        d.insert("layers.0.w_ih", ArrayD::zeros(IxDyn(&[3, 2])));
        check(d, |e| matches!(e, Error::Shape { .. }), &["`b` [2]", "`b` [3]", "`layers.0.w_ih` [3, 2]"]);
        let mut d = good.clone();
        d.insert("b", ArrayD::from_elem(IxDyn(&[2]), f64::INFINITY));
        check(d, |e| matches!(e, Error::NonFinite { .. }), &["`b`"]);
    }

    #[test]
    fn renamed_and_long_lists() {
        let d: StateDict<f32> = (0..40).map(|i| (format!("weight_ih_l{i}"), ArrayD::zeros(IxDyn(&[1])))).collect();
        let ours = d.clone().renamed(crate::from_torch).unwrap();
        assert_eq!(ours.names().nth(39), Some("layers.39.w_ih"));
        assert!(d.renamed(|_| "same".to_string()).is_err());
        let listed = list_names(ours.names());
        assert!(listed.contains("`layers.15.w_ih`") && !listed.contains("`layers.16.w_ih`"), "{listed}");
        assert!(listed.ends_with("… (40 in all)"), "{listed}");
        assert_eq!(list_names([]), "none");
    }
}
