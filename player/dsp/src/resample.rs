//! Sample-rate conversion for a stream whose rate differs from the AudioContext's: 4-point cubic
//! Hermite interpolation at a fractional read position that runs on continuously across frames,
//! so chunk seams are invisible (the interpolator never restarts at a frame boundary).

/// The interpolated value at `frac` (0..1) between `x1` and `x2`, with neighbours `x0` and `x3`.
pub fn hermite(x0: f32, x1: f32, x2: f32, x3: f32, frac: f32) -> f32 {
    let c1 = 0.5 * (x2 - x0);
    let c2 = x0 - 2.5 * x1 + 2.0 * x2 - 0.5 * x3;
    let c3 = 0.5 * (x3 - x0) + 1.5 * (x1 - x2);
    ((c3 * frac + c2) * frac + c1) * frac + x1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_through_the_samples() {
        assert_eq!(hermite(0.1, 0.2, 0.4, 0.8, 0.0), 0.2);
        assert!((hermite(0.1, 0.2, 0.4, 0.8, 1.0) - 0.4).abs() < 1e-6);
    }

    #[test]
    fn reproduces_a_line_exactly() {
        for k in 0..=10 {
            let f = k as f32 / 10.0;
            assert!((hermite(1.0, 2.0, 3.0, 4.0, f) - (2.0 + f)).abs() < 1e-6);
        }
    }
}
