//! A picture of a digit (PNG or JPEG, any size, colour or grey, either
//! polarity) made into a 28x28 image the way MNIST's were made: grey, light ink
//! on a dark background, the ink's bounding box scaled (anti-aliased, aspect
//! ratio kept) to fit 20x20, and placed so its centre of mass is the frame's
//! centre.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// The side of the image made: MNIST's 28.
pub use super::catalog::SIDE;
/// The side of the box the ink is scaled to fit, as MNIST's digits were.
const BOX: f64 = 20.0;
/// The largest picture decoded (about a 50-megapixel photo); larger ones are
/// refused from their header, before any pixel is allocated.
pub const MAX_PIXELS: u64 = 50_000_000;
/// The decoder's own allocation cap: a 16-bit RGBA picture of `MAX_PIXELS`
/// needs 400 MB, so this only stops decoders that would need more than that.
const MAX_ALLOC: u64 = 512 * 1024 * 1024;
/// Below this difference between the brightest pixel and the background
/// (of 255) there is no ink, only noise or a flat picture.
const MIN_CONTRAST: u8 = 32;
/// The fraction of the ink's contrast that counts as background noise (JPEG
/// ringing, paper texture) and is mapped to 0.
const NOISE: f32 = 0.1;
/// A pixel at or above this level (after levelling) is ink for the bounding
/// box; fainter ones are only the stroke's anti-aliased edge or noise.
const INK: u8 = 64;

/// Why a picture could not be made into a digit image.
#[derive(Debug, thiserror::Error)]
pub enum DigitImageError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a PNG or JPEG image", path.display())]
    NotAnImage { path: PathBuf },
    #[error("{}: corrupt {format} image: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("{}: the image is {width}x{height} pixels, more than the limit of {MAX_PIXELS}", path.display())]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    #[error("{}: the image is too large to decode ({reason})", path.display())]
    DecoderLimit { path: PathBuf, reason: String },
    #[error("{}: the image is blank: no ink to find a digit in", path.display())]
    Blank { path: PathBuf },
}

/// Reads the PNG or JPEG at `path` and makes it an MNIST-style 28x28 image.
pub fn load(path: &Path) -> Result<[u8; SIDE * SIDE], DigitImageError> {
    let image = decode(path)?;
    to_mnist(&image).ok_or_else(|| DigitImageError::Blank { path: path.into() })
}

/// Decodes a PNG or JPEG, refusing pictures above `MAX_PIXELS` from their
/// header's dimensions.
fn decode(path: &Path) -> Result<DynamicImage, DigitImageError> {
    let unreadable = |source| DigitImageError::Unreadable {
        path: path.into(),
        source,
    };
    // The format comes from the content alone, not the name: a text file
    // named .png is not an image, a JPEG named .png is one.
    let file = crate::input_file::open_regular(path).map_err(unreadable)?;
    let mut reader = ImageReader::new(std::io::BufReader::new(file))
        .with_guessed_format()
        .map_err(unreadable)?;
    let format = match reader.format() {
        Some(ImageFormat::Png) => "PNG",
        Some(ImageFormat::Jpeg) => return decode_jpeg(path, reader.into_inner()),
        _ => return Err(DigitImageError::NotAnImage { path: path.into() }),
    };
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let failed = |e: image::ImageError| match e {
        image::ImageError::Limits(e) => DigitImageError::DecoderLimit {
            path: path.into(),
            reason: e.to_string(),
        },
        e => DigitImageError::Corrupt {
            path: path.into(),
            format,
            // Decoder messages are one line; make sure of it.
            reason: e.to_string().replace('\n', " "),
        },
    };
    let decoder = reader.into_decoder().map_err(failed)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(DigitImageError::TooLarge {
            path: path.into(),
            width,
            height,
        });
    }
    DynamicImage::from_decoder(decoder).map_err(failed)
}

/// The largest JPEG file read: far more than a JPEG of `MAX_PIXELS` needs.
const MAX_JPEG_BYTES: u64 = 256 * 1024 * 1024;

/// Decodes a JPEG only when whole (see [`super::jpeg`]).
fn decode_jpeg(path: &Path, file: impl Read) -> Result<DynamicImage, DigitImageError> {
    let mut bytes = Vec::new();
    file.take(MAX_JPEG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| DigitImageError::Unreadable {
            path: path.into(),
            source,
        })?;
    if bytes.len() as u64 > MAX_JPEG_BYTES {
        return Err(DigitImageError::DecoderLimit {
            path: path.into(),
            reason: format!("the file is over {} MiB", MAX_JPEG_BYTES >> 20),
        });
    }
    super::jpeg::decode(&bytes, MAX_PIXELS).map_err(|e| match e {
        super::jpeg::JpegError::Corrupt(reason) => DigitImageError::Corrupt {
            path: path.into(),
            format: "JPEG",
            reason,
        },
        super::jpeg::JpegError::TooLarge { width, height } => DigitImageError::TooLarge {
            path: path.into(),
            width,
            height,
        },
    })
}

/// The picture as MNIST would have it, or `None` when it holds no ink.
pub fn to_mnist(image: &DynamicImage) -> Option<[u8; SIDE * SIDE]> {
    if image.width() == 0 || image.height() == 0 {
        return None;
    }
    let mut grey = flatten_alpha(image);
    let background = make_light_on_dark(&mut grey);
    level(&mut grey, background)?;
    let (x, y, w, h) = ink_box(&grey);
    let scale = BOX / f64::from(w.max(h));
    let fit = |side: u32| ((f64::from(side) * scale).round() as u32).clamp(1, BOX as u32);
    let crop = imageops::crop_imm(&grey, x, y, w, h).to_image();
    let mut digit = imageops::resize(&crop, fit(w), fit(h), FilterType::Triangle);
    restore_peak(&mut digit);
    Some(centre_by_mass(&digit))
}

/// Grey levels with any transparency composited onto a background that
/// contrasts the visible content, so that ink drawn on a transparent canvas
/// shows whatever its colour (black strokes on white, white strokes on black).
fn flatten_alpha(image: &DynamicImage) -> GrayImage {
    let grey_alpha = image.to_luma_alpha8();
    let (mut weighted, mut weight) = (0u64, 0u64);
    for p in grey_alpha.pixels() {
        let [l, a] = p.0;
        weighted += u64::from(l) * u64::from(a);
        weight += u64::from(a);
    }
    let background: u32 = if weighted < 128 * weight { 255 } else { 0 };
    GrayImage::from_fn(grey_alpha.width(), grey_alpha.height(), |x, y| {
        let [l, a] = grey_alpha.get_pixel(x, y).0;
        let (l, a) = (u32::from(l), u32::from(a));
        image::Luma([((l * a + background * (255 - a) + 127) / 255) as u8])
    })
}

/// Inverts a picture whose background (the median of its border pixels) is
/// light, so the digit is light on dark as in MNIST; returns the background
/// level after that.
fn make_light_on_dark(grey: &mut GrayImage) -> u8 {
    let (w, h) = grey.dimensions();
    let mut border: Vec<u8> = grey
        .enumerate_pixels()
        .filter(|&(x, y, _)| x == 0 || y == 0 || x == w - 1 || y == h - 1)
        .map(|(_, _, p)| p.0[0])
        .collect();
    let mid = border.len() / 2;
    let median = *border.select_nth_unstable(mid).1;
    if median > 127 {
        imageops::invert(grey);
        255 - median
    } else {
        median
    }
}

/// Stretches the levels so that the background and its noise are 0 and the
/// brightest ink is 255, as in MNIST; `None` when there is no ink.
fn level(grey: &mut GrayImage, background: u8) -> Option<()> {
    let peak = grey.pixels().map(|p| p.0[0]).max()?;
    if peak.saturating_sub(background) < MIN_CONTRAST {
        return None;
    }
    let contrast = f32::from(peak - background);
    let floor = f32::from(background) + NOISE * contrast;
    let span = f32::from(peak) - floor;
    for p in grey.pixels_mut() {
        p.0[0] = ((f32::from(p.0[0]) - floor) / span * 255.0)
            .round()
            .clamp(0.0, 255.0) as u8;
    }
    Some(())
}

/// The bounding box `(x, y, width, height)` of the pixels at or above `INK`;
/// the levelled peak is 255, so there is at least one.
fn ink_box(grey: &GrayImage) -> (u32, u32, u32, u32) {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in grey.enumerate_pixels() {
        if p.0[0] >= INK {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
}

/// Scales the levels back up to a peak of 255: shrinking a thin stroke
/// averages it with the background, and MNIST's strokes peak at full ink.
fn restore_peak(digit: &mut GrayImage) {
    let peak = digit.pixels().map(|p| p.0[0]).max().unwrap_or(0);
    if peak == 0 {
        return;
    }
    for p in digit.pixels_mut() {
        p.0[0] = ((u32::from(p.0[0]) * 255 + u32::from(peak) / 2) / u32::from(peak)) as u8;
    }
}

/// Places `digit` (at most 20x20) in a 28x28 frame with its centre of mass at
/// the frame's centre, to the nearest pixel, kept inside the frame.
fn centre_by_mass(digit: &GrayImage) -> [u8; SIDE * SIDE] {
    let (_, cx, cy) = centre_of_mass(digit.as_raw(), digit.width() as usize);
    let offset = |centre: f64, extent: u32| {
        let max = f64::from(SIDE as u32 - extent);
        (SIDE as f64 / 2.0 - centre).round().clamp(0.0, max) as usize
    };
    let (ox, oy) = (offset(cx, digit.width()), offset(cy, digit.height()));
    let mut out = [0u8; SIDE * SIDE];
    for (x, y, p) in digit.enumerate_pixels() {
        out[(oy + y as usize) * SIDE + ox + x as usize] = p.0[0];
    }
    out
}

/// The total intensity of a row-major image `width` wide and its centre of
/// mass, with pixel `i` covering `[i, i + 1)` (so a 28x28 frame's centre is 14).
fn centre_of_mass(pixels: &[u8], width: usize) -> (f64, f64, f64) {
    let (mut mass, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for (i, &p) in pixels.iter().enumerate() {
        let v = f64::from(p);
        mass += v;
        sx += v * ((i % width) as f64 + 0.5);
        sy += v * ((i / width) as f64 + 0.5);
    }
    if mass == 0.0 {
        (0.0, 0.0, 0.0)
    } else {
        (mass, sx / mass, sy / mass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayAlphaImage, Luma, LumaA};

    /// A light-on-dark "7"-like shape (a bar and a diagonal) off-centre in a
    /// 97x61 picture: heavier at the top, so mass and box centres differ.
    fn seven() -> GrayImage {
        GrayImage::from_fn(97, 61, |x, y| {
            let (x, y) = (x as i32, y as i32);
            let bar = (8..16).contains(&y) && (50..90).contains(&x);
            let stem = (16..55).contains(&y) && (x - (88 - (y - 16) / 2)).abs() <= 4;
            Luma([if bar || stem { 230 } else { 12 }])
        })
    }

    fn bounding_box(pixels: &[u8; SIDE * SIDE]) -> (usize, usize, usize, usize) {
        let ink: Vec<(usize, usize)> = (0..SIDE * SIDE)
            .filter(|&i| pixels[i] > 0)
            .map(|i| (i % SIDE, i / SIDE))
            .collect();
        let xs = ink.iter().map(|p| p.0);
        let ys = ink.iter().map(|p| p.1);
        (
            xs.clone().min().unwrap(),
            ys.clone().min().unwrap(),
            xs.max().unwrap(),
            ys.max().unwrap(),
        )
    }

    #[test]
    fn centre_of_mass_lands_at_the_frame_centre() {
        let out = to_mnist(&DynamicImage::ImageLuma8(seven())).unwrap();
        let (mass, cx, cy) = centre_of_mass(&out, SIDE);
        assert!(mass > 0.0);
        assert!(
            (cx - 14.0).abs() <= 1.0 && (cy - 14.0).abs() <= 1.0,
            "{cx} {cy}"
        );
    }

    #[test]
    fn the_ink_is_scaled_to_fit_twenty_by_twenty() {
        let out = to_mnist(&DynamicImage::ImageLuma8(seven())).unwrap();
        let (x0, y0, x1, y1) = bounding_box(&out);
        let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
        // The longer side is 20, the aspect ratio kept: the shape is 43x47.
        assert_eq!(h, 20, "{w}x{h}");
        assert!((17..=19).contains(&w), "{w}x{h}");
        assert_eq!(out.iter().max(), Some(&255), "full ink, as in MNIST");
    }

    #[test]
    fn dark_on_light_is_inverted_into_light_on_dark() {
        let light_on_dark = seven();
        let mut dark_on_light = light_on_dark.clone();
        imageops::invert(&mut dark_on_light);
        let a = to_mnist(&DynamicImage::ImageLuma8(light_on_dark)).unwrap();
        let b = to_mnist(&DynamicImage::ImageLuma8(dark_on_light)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn ink_on_a_transparent_canvas_shows_whatever_its_colour() {
        let grey = seven();
        let expected = to_mnist(&DynamicImage::ImageLuma8(grey.clone())).unwrap();
        for ink in [0u8, 255] {
            // The shape's ink opaque, its background transparent.
            let transparent = GrayAlphaImage::from_fn(97, 61, |x, y| {
                LumaA([
                    ink,
                    if grey.get_pixel(x, y).0[0] > 100 {
                        255
                    } else {
                        0
                    },
                ])
            });
            let out = to_mnist(&DynamicImage::ImageLumaA8(transparent)).unwrap();
            assert_eq!(out, expected, "ink {ink}");
        }
    }

    #[test]
    fn flat_or_faint_pictures_are_blank() {
        for image in [
            GrayImage::from_pixel(40, 30, Luma([255])),
            GrayImage::from_pixel(1, 1, Luma([0])),
            GrayImage::from_fn(40, 30, |x, _| Luma([100 + (x % 2) as u8 * 20])),
        ] {
            assert_eq!(to_mnist(&DynamicImage::ImageLuma8(image)), None);
        }
        let clear = GrayAlphaImage::from_pixel(10, 10, LumaA([0, 0]));
        assert_eq!(to_mnist(&DynamicImage::ImageLumaA8(clear)), None);
    }

    #[test]
    fn a_single_pixel_of_ink_is_centred() {
        let mut dot = GrayImage::from_pixel(5, 3, Luma([0]));
        dot.put_pixel(4, 0, Luma([255]));
        let out = to_mnist(&DynamicImage::ImageLuma8(dot)).unwrap();
        let (mass, cx, cy) = centre_of_mass(&out, SIDE);
        assert!(mass > 0.0);
        assert!(
            (cx - 14.0).abs() <= 1.0 && (cy - 14.0).abs() <= 1.0,
            "{cx} {cy}"
        );
    }
}
