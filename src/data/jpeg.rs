//! JPEG pictures decoded only when whole. Decoders render what they can of
//! a damaged JPEG (as browsers do): the `image` crate's zune-jpeg, in the
//! lenient mode `image` sets, pads a cut scan with zeros and decodes a
//! header that claims 7000 x 7000 pixels over 64 x 80 pixels' worth of data.
//! A prediction from such a picture would be a confident answer about a
//! picture never read, so the file's structure is checked first (the image
//! data ends at its end-of-image marker; it holds enough bits for the blocks
//! its header claims) and then zune-jpeg decodes in strict mode, which
//! reports what lenient mode hides. JPEG has no checksum: scan data garbled
//! into other valid codes still decodes, as in any decoder.

use image::{DynamicImage, GrayImage, RgbImage};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// What the file's markers say, read without decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    width: u32,
    height: u32,
    /// Bytes of entropy-coded data in all scans (stuffing and restart
    /// markers included).
    scan_bytes: u64,
}

/// Why a JPEG is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum JpegError {
    /// Damaged: the reason, one line.
    Corrupt(String),
    /// More than `max_pixels`, from the header.
    TooLarge { width: u32, height: u32 },
}

/// Decodes a whole JPEG of at most `max_pixels` pixels, as grey or RGB.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, JpegError> {
    let layout = layout(bytes).map_err(JpegError::Corrupt)?;
    let (width, height) = (layout.width, layout.height);
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(JpegError::TooLarge { width, height });
    }
    // Every block of the first component codes at least its DC difference
    // (a Huffman code of at least one bit), in any JPEG mode.
    let blocks = u64::from(width.div_ceil(8)) * u64::from(height.div_ceil(8));
    if layout.scan_bytes * 8 < blocks {
        return Err(JpegError::Corrupt(format!(
            "its header claims {width}x{height} pixels but it holds {} bytes of image data, \
             fewer than such a picture needs",
            layout.scan_bytes
        )));
    }
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(width as usize)
        .set_max_height(height as usize);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let corrupt =
        |e: zune_jpeg::errors::DecodeErrors| JpegError::Corrupt(e.to_string().replace('\n', " "));
    decoder.decode_headers().map_err(corrupt)?;
    let grey = decoder.input_colorspace() == Some(ColorSpace::Luma);
    let out = if grey {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    decoder.set_options(options.jpeg_set_out_colorspace(out));
    let pixels = decoder.decode().map_err(corrupt)?;
    let wrong_size = || JpegError::Corrupt("the decoder returned a picture of another size".into());
    if grey {
        GrayImage::from_raw(width, height, pixels)
            .map(DynamicImage::ImageLuma8)
            .ok_or_else(wrong_size)
    } else {
        RgbImage::from_raw(width, height, pixels)
            .map(DynamicImage::ImageRgb8)
            .ok_or_else(wrong_size)
    }
}

/// Walks the markers from SOI to the first EOI after a scan: the frame's
/// size, and the bytes of every scan's entropy-coded data.
fn layout(bytes: &[u8]) -> Result<Layout, String> {
    let cut = || "the file ends before its end-of-image marker (cut short?)".to_string();
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("it does not start with a JPEG start-of-image marker".into());
    }
    let (mut at, mut size, mut scan_bytes, mut scans) = (2, None, 0u64, 0);
    loop {
        // A marker: 0xFF, any number of 0xFF fill bytes, its code.
        if bytes.get(at) != Some(&0xFF) {
            return Err(match bytes.get(at) {
                None => cut(),
                Some(_) => format!("no marker where one belongs (byte {at})"),
            });
        }
        while bytes.get(at) == Some(&0xFF) {
            at += 1;
        }
        let code = *bytes.get(at).ok_or_else(cut)?;
        at += 1;
        match code {
            0xD9 if scans > 0 => break,
            0xD9 => return Err("it ends before any image data".into()),
            // Markers without a segment.
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let length = match bytes.get(at..at + 2) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(cut()),
        };
        let segment = bytes
            .get(at + 2..at + length.max(2))
            .filter(|_| length >= 2)
            .ok_or_else(cut)?;
        at += length;
        match code {
            // Start of frame (all but DHT 0xC4, JPG 0xC8, DAC 0xCC).
            0xC0..=0xCF if ![0xC4, 0xC8, 0xCC].contains(&code) => {
                let &[_precision, h1, h0, w1, w0, ..] = segment else {
                    return Err("its frame header is too short".into());
                };
                let (height, width) = (u16::from_be_bytes([h1, h0]), u16::from_be_bytes([w1, w0]));
                if width == 0 || height == 0 {
                    return Err(format!("its header gives a size of {width}x{height}"));
                }
                size = Some((u32::from(width), u32::from(height)));
            }
            0xDA => {
                if size.is_none() {
                    return Err("its image data comes before its frame header".into());
                }
                // Entropy-coded data: up to the next marker other than a
                // stuffed zero or a restart marker.
                let start = at;
                loop {
                    match (bytes.get(at), bytes.get(at + 1)) {
                        (None, _) | (Some(0xFF), None) => return Err(cut()),
                        (Some(0xFF), Some(0x00 | 0xD0..=0xD7)) => at += 2,
                        // Fill bytes, which may precede a restart marker.
                        (Some(0xFF), Some(0xFF)) => at += 1,
                        (Some(0xFF), Some(_)) => break,
                        (Some(_), _) => at += 1,
                    }
                }
                scan_bytes += (at - start) as u64;
                scans += 1;
            }
            _ => {}
        }
    }
    let (width, height) = size.expect("a scan follows a frame header");
    Ok(Layout {
        width,
        height,
        scan_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A baseline JPEG of a ring, grey or colour.
    fn jpeg(width: u32, height: u32, colour: bool) -> Vec<u8> {
        let ring = |x: u32, y: u32| {
            let (dx, dy) = (x as i64 - width as i64 / 2, y as i64 - height as i64 / 2);
            let r2 = dx * dx + dy * dy;
            let inner = (width.min(height) as i64 / 4).pow(2);
            if r2 > inner && r2 < 4 * inner {
                250
            } else {
                ((x * 7 + y * 13) % 40) as u8
            }
        };
        let picture = RgbImage::from_fn(width, height, |x, y| {
            let v = ring(x, y);
            image::Rgb([v, if colour { v / 2 } else { v }, v])
        });
        let picture = if colour {
            DynamicImage::ImageRgb8(picture)
        } else {
            DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(picture).into_luma8())
        };
        let mut bytes = Vec::new();
        picture
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        bytes
    }

    fn corrupt(bytes: &[u8]) -> String {
        match decode(bytes, u64::MAX) {
            Err(JpegError::Corrupt(reason)) => reason,
            other => panic!("decoded a damaged JPEG: {other:?}"),
        }
    }

    /// Whole pictures decode to what the `image` crate decodes.
    #[test]
    fn whole_pictures_decode_as_the_image_crate_decodes_them() {
        for (width, height, colour) in [
            (64, 80, false),
            (33, 17, true),
            (28, 28, false),
            (1, 1, true),
        ] {
            let bytes = jpeg(width, height, colour);
            let ours = decode(&bytes, u64::MAX).unwrap();
            let theirs = image::load_from_memory(&bytes).unwrap();
            assert_eq!((ours.width(), ours.height()), (width, height));
            assert_eq!(
                ours.to_rgb8(),
                theirs.to_rgb8(),
                "{width}x{height} colour {colour}"
            );
        }
    }

    /// The cases the `image` crate decoded as if whole.
    #[test]
    fn damaged_pictures_are_refused_saying_why() {
        let whole = jpeg(64, 80, false);
        let sos = whole.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        assert!(image::load_from_memory(&whole[..sos + (whole.len() - sos) * 3 / 10]).is_ok());
        for cut in [
            sos + (whole.len() - sos) * 3 / 10,
            whole.len() - 2,
            whole.len() - 1,
            sos + 3,
            sos,
            40,
        ] {
            assert!(
                corrupt(&whole[..cut]).contains("cut short"),
                "cut at {cut}: {}",
                corrupt(&whole[..cut])
            );
        }
        // A header claiming 7000 x 7000 over the data of 64 x 80.
        let sof = whole.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let mut huge = whole.clone();
        huge[sof + 5..sof + 9].copy_from_slice(&[0x1B, 0x58, 0x1B, 0x58]);
        assert!(image::load_from_memory(&huge).is_ok());
        let reason = corrupt(&huge);
        assert!(reason.contains("claims 7000x7000 pixels"), "{reason}");
        // Above the limit, from the header, before anything is decoded.
        assert_eq!(
            decode(&huge, 1_000_000).unwrap_err(),
            JpegError::TooLarge {
                width: 7000,
                height: 7000
            }
        );
        // A marker inside the scan data that strict decoding refuses.
        let mut marked = whole.clone();
        let middle = sos + 20 + (whole.len() - sos - 20) / 2;
        marked[middle..middle + 2].copy_from_slice(&[0xFF, 0xC4]);
        corrupt(&marked);
        assert!(corrupt(b"\xFF\xD8\xFF\xD9").contains("before any image data"));
        assert!(corrupt(b"GIF89a").contains("start-of-image"));
    }
}
