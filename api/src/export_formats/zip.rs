//! A ZIP archive written front to back, for XLSX: each entry's local header goes out before
//! its data (sizes and CRC-32 follow the data in a data descriptor), the central directory at
//! the end. Entries are deflated as they are written (a sheet's XML shrinks about tenfold), so
//! the archive is made as the rows come, in bounded memory: the compressor's window and one
//! output buffer. No ZIP64: an archive is refused past 4 GiB (of data before compression).

use miniz_oxide::deflate::core::{CompressorOxide, create_comp_flags_from_zip_params};
use miniz_oxide::{MZError, MZFlush, MZStatus};

use super::TooLarge;

static CRC_32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// General purpose flags: sizes in a data descriptor (bit 3), names in UTF-8 (bit 11).
const FLAGS: u16 = 0x0808;
/// Version 2.0: what deflated entries with data descriptors need.
const VERSION: u16 = 20;
/// Compression method 8: deflate.
const DEFLATED: u16 = 8;
/// Deflate level 1 of 9: an XML sheet already shrinks about tenfold at it, at a fraction of the
/// time of the default level.
const LEVEL: i32 = 1;
/// Raw deflate (negative window bits: no zlib header), as ZIP stores it, with a 32 KiB window.
const RAW_WINDOW_BITS: i32 = -15;
/// 1 January 1980, 00:00 (MS-DOS time and date): the archive does not date its entries.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;

struct Entry {
    name: String,
    crc: u32,
    compressed: u32,
    size: u32,
    offset: u32,
}

struct OpenEntry {
    name: String,
    digest: crc::Digest<'static, u32>,
    compressor: Box<CompressorOxide>,
    size: u64,
    compressed: u64,
    offset: u32,
}

pub struct ZipWriter {
    out: Vec<u8>,
    written: u64,
    entries: Vec<Entry>,
    open: Option<OpenEntry>,
    /// Where the compressor writes before the bytes join `out`.
    buffer: Vec<u8>,
}

const TOO_LARGE: TooLarge = TooLarge("4 GiB, what an XLSX file without ZIP64 can hold");

fn u32_of(value: u64) -> Result<u32, TooLarge> {
    u32::try_from(value).map_err(|_| TOO_LARGE)
}

impl ZipWriter {
    pub fn new() -> ZipWriter {
        ZipWriter { out: Vec::new(), written: 0, entries: Vec::new(), open: None, buffer: vec![0; 64 * 1024] }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.written += bytes.len() as u64;
    }

    fn put_u16(&mut self, value: u16) {
        self.put(&value.to_le_bytes());
    }

    fn put_u32(&mut self, value: u32) {
        self.put(&value.to_le_bytes());
    }

    /// Starts an entry (ending the one open).
    pub fn start(&mut self, name: &str) -> Result<(), TooLarge> {
        self.end()?;
        let offset = u32_of(self.written)?;
        self.put_u32(0x0403_4b50);
        self.put_u16(VERSION);
        self.put_u16(FLAGS);
        self.put_u16(DEFLATED);
        self.put_u16(DOS_TIME);
        self.put_u16(DOS_DATE);
        self.put_u32(0); // CRC-32, size and size: in the data descriptor
        self.put_u32(0);
        self.put_u32(0);
        self.put_u16(u16::try_from(name.len()).map_err(|_| TooLarge("a name of 65,535 bytes"))?);
        self.put_u16(0);
        self.put(name.as_bytes());
        let flags = create_comp_flags_from_zip_params(LEVEL, RAW_WINDOW_BITS, 0);
        self.open = Some(OpenEntry {
            name: name.to_string(),
            digest: CRC_32.digest(),
            compressor: Box::new(CompressorOxide::new(flags)),
            size: 0,
            compressed: 0,
            offset,
        });
        Ok(())
    }

    /// Data of the open entry (none open: ignored, which no caller does).
    pub fn write(&mut self, bytes: &[u8]) {
        if let Some(open) = &mut self.open {
            open.digest.update(bytes);
            open.size += bytes.len() as u64;
        }
        self.deflate(bytes, MZFlush::None);
    }

    /// Feeds `input` to the open entry's compressor and appends what it gives out; with
    /// `MZFlush::Finish`, until the deflate stream is complete.
    fn deflate(&mut self, mut input: &[u8], flush: MZFlush) {
        let Some(open) = &mut self.open else {
            return;
        };
        loop {
            let result = miniz_oxide::deflate::stream::deflate(&mut open.compressor, input, &mut self.buffer, flush);
            let written = &self.buffer[..result.bytes_written];
            self.out.extend_from_slice(written);
            self.written += written.len() as u64;
            open.compressed += written.len() as u64;
            input = &input[result.bytes_consumed..];
            let output_full = result.bytes_written == self.buffer.len();
            match result.status {
                Ok(MZStatus::StreamEnd) => return,
                // Everything taken, and nothing more to give out before more input comes.
                Ok(_) | Err(MZError::Buf) if flush == MZFlush::None && input.is_empty() && !output_full => return,
                Ok(_) | Err(MZError::Buf) => {}
                // The compressor fails only on a misuse of its stream (none here): the entry
                // is left as it is and its CRC will not match, so the file reads as broken.
                Err(_) => return,
            }
        }
    }

    /// Ends the open entry: the end of its deflate stream, then its data descriptor.
    fn end(&mut self) -> Result<(), TooLarge> {
        self.deflate(&[], MZFlush::Finish);
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let entry = Entry {
            name: open.name,
            crc: open.digest.finalize(),
            compressed: u32_of(open.compressed)?,
            size: u32_of(open.size)?,
            offset: open.offset,
        };
        self.put_u32(0x0807_4b50);
        self.put_u32(entry.crc);
        self.put_u32(entry.compressed);
        self.put_u32(entry.size);
        self.entries.push(entry);
        Ok(())
    }

    /// The bytes written since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Ends the open entry and writes the central directory: the archive's last bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, TooLarge> {
        self.end()?;
        let directory_offset = u32_of(self.written)?;
        let entries = std::mem::take(&mut self.entries);
        for entry in &entries {
            self.put_u32(0x0201_4b50);
            self.put_u16(VERSION); // made by: MS-DOS attributes, version 2.0
            self.put_u16(VERSION);
            self.put_u16(FLAGS);
            self.put_u16(DEFLATED);
            self.put_u16(DOS_TIME);
            self.put_u16(DOS_DATE);
            self.put_u32(entry.crc);
            self.put_u32(entry.compressed);
            self.put_u32(entry.size);
            self.put_u16(u16::try_from(entry.name.len()).map_err(|_| TooLarge("a name of 65,535 bytes"))?);
            self.put_u16(0); // extra field
            self.put_u16(0); // comment
            self.put_u16(0); // disk
            self.put_u16(0); // internal attributes
            self.put_u32(0); // external attributes
            self.put_u32(entry.offset);
            self.put(entry.name.as_bytes());
        }
        let directory_size = u32_of(self.written - u64::from(directory_offset))?;
        let count = u16::try_from(entries.len()).map_err(|_| TooLarge("65,535 entries"))?;
        self.put_u32(0x0605_4b50);
        self.put_u16(0);
        self.put_u16(0);
        self.put_u16(count);
        self.put_u16(count);
        self.put_u32(directory_size);
        self.put_u32(directory_offset);
        self.put_u16(0);
        Ok(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_is_zips() {
        // The check value of CRC-32/ISO-HDLC, the CRC of ZIP.
        assert_eq!(CRC_32.checksum(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn an_archive_ends_with_a_directory_naming_its_entries() {
        let mut zip = ZipWriter::new();
        zip.start("a.txt").expect("start");
        zip.write(b"hello");
        let mut bytes = zip.take();
        zip.start("b/c.xml").expect("start");
        zip.write(b"<x/>");
        bytes.extend(zip.finish().expect("finish"));
        let end = &bytes[bytes.len() - 22..];
        assert_eq!(&end[..4], &[0x50, 0x4b, 0x05, 0x06]);
        assert_eq!(u16::from_le_bytes([end[10], end[11]]), 2, "two entries");
        let directory = u32::from_le_bytes([end[16], end[17], end[18], end[19]]) as usize;
        assert_eq!(&bytes[directory..directory + 4], &[0x50, 0x4b, 0x01, 0x02]);
        // The first entry's data: after its 30-byte header and name, deflated "hello".
        let data = &bytes[30 + 5..];
        let inflated = miniz_oxide::inflate::decompress_to_vec(data).expect("a raw deflate stream");
        assert_eq!(inflated, b"hello");
    }

    #[test]
    fn large_entries_are_deflated_and_inflate_back() {
        let row = "<row r=\"2\"><c r=\"A2\" t=\"inlineStr\"><is><t>The University of Hong Kong</t></is></c></row>";
        let text = row.repeat(20_000);
        let mut zip = ZipWriter::new();
        zip.start("sheet.xml").expect("start");
        let mut bytes = zip.take();
        for piece in text.as_bytes().chunks(1_000) {
            zip.write(piece);
        }
        bytes.extend(zip.finish().expect("finish"));
        assert!(bytes.len() < text.len() / 10, "{} bytes for {}", bytes.len(), text.len());
        let inflated = miniz_oxide::inflate::decompress_to_vec(&bytes[30 + "sheet.xml".len()..]).expect("inflate");
        assert_eq!(inflated, text.as_bytes());
    }
}
