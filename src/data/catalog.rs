//! The data sets gpu-mnist knows by name: MNIST and its two drop-in
//! replacements, Fashion-MNIST and Kuzushiji-MNIST (KMNIST). Each is four IDX
//! files of 28 x 28 images and labels 0-9 under the same names; what differs is
//! their content (the SHA-256 sums), where they are published, where they are
//! cached and what the ten classes mean. Finding, downloading and loading them
//! is [`super::source`]'s job.

use std::path::PathBuf;

use super::dataset::{Dataset, Splits};
use super::idx::{self, IMAGES_MAGIC, LABELS_MAGIC};
use super::verify::{self, Digest, Received, RemoteFile};

/// Classes of every catalogue entry.
pub const CLASSES: usize = 10;
/// Side of every catalogue entry's square images, in pixels.
pub const SIDE: usize = 28;
/// Pixels per image of every catalogue entry: 28 x 28.
pub const FEATURES: usize = SIDE * SIDE;
/// Examples in the training and test files of every catalogue entry.
pub const TRAIN_EXAMPLES: usize = 60_000;
pub const TEST_EXAMPLES: usize = 10_000;

/// The four files' names without `.gz`, shared by all three data sets (the
/// other two copy MNIST's layout to be drop-in replacements), in the order
/// train images, train labels, test images, test labels.
const STEMS: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// What one file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSums {
    /// SHA-256 of the decompressed content, where a source publishes it: it
    /// survives a mirror's recompressing.
    pub content: Option<&'static str>,
    /// SHA-256 of the upstream `.gz` as published.
    pub archive: &'static str,
    /// Size in bytes of the upstream `.gz`.
    pub archive_size: u64,
}

/// A data set of the catalogue.
#[derive(Debug, PartialEq, Eq)]
pub struct DataSet {
    /// The name on the command line (`--dataset`), in checkpoints' metadata and
    /// of the directories it is looked for in (`data/<name>`, the cache's `<name>`).
    pub name: &'static str,
    /// The name in messages.
    pub title: &'static str,
    /// Environment variable naming a directory that holds the files.
    pub data_env: &'static str,
    /// Directories a system package installs the files into.
    pub system_dirs: &'static [&'static str],
    /// Public copies of the upstream files, tried in order.
    pub mirrors: &'static [&'static str],
    /// Sums of the four files, in the order of [`DataSet::files`].
    pub sums: [FileSums; 4],
    /// What each label means, indexed by the label.
    pub classes: [&'static str; CLASSES],
}

/// One of a data set's four files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdxFile {
    /// Canonical name without `.gz`, e.g. `train-images-idx3-ubyte`.
    pub stem: &'static str,
    pub magic: u32,
    pub sums: FileSums,
}

impl IdxFile {
    /// Names accepted on disk, in order of preference: gzip or raw, and the
    /// `train-images.idx3-ubyte` spelling some mirrors use.
    pub fn accepted_names(&self) -> [String; 4] {
        let dotted = self.stem.replacen("-idx", ".idx", 1);
        [
            format!("{}.gz", self.stem),
            self.stem.to_string(),
            format!("{dotted}.gz"),
            dotted,
        ]
    }

    /// The first accepted name present in `dir`. Whatever is there counts
    /// (a directory, a FIFO): reading it then says what is wrong with it,
    /// rather than calling it missing.
    pub fn find_in(&self, dir: &std::path::Path) -> Option<PathBuf> {
        self.accepted_names()
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.exists())
    }

    /// The digests that accept a copy of this file.
    fn digests(&self) -> Vec<Digest> {
        let content = self.sums.content.map(|s| Digest::Content(s.to_string()));
        let archive = Digest::Archive {
            sha256: self.sums.archive.to_string(),
            size: self.sums.archive_size,
        };
        content.into_iter().chain([archive]).collect()
    }

    /// The file as the mirrors serve it: gzip under its canonical name, at
    /// most as long as its content (a mirror may serve it uncompressed).
    pub fn remote(&self) -> RemoteFile {
        RemoteFile {
            name: format!("{}.gz", self.stem),
            digests: self.digests(),
            max_bytes: self.content_size(),
        }
    }

    /// Bytes of the decompressed file: its header, then a byte per label or
    /// pixel.
    pub fn content_size(&self) -> u64 {
        let count = if self.stem.starts_with("train") {
            TRAIN_EXAMPLES
        } else {
            TEST_EXAMPLES
        };
        match self.magic {
            IMAGES_MAGIC => 16 + (count * FEATURES) as u64,
            _ => 8 + count as u64,
        }
    }
}

impl DataSet {
    /// Both splits from the four files' bytes as served (gzip or not), in
    /// [`Self::files`] order, each checked against its SHA-256 before it is
    /// read (for files that did not come from a directory: a web page's).
    pub fn splits_from_bytes(&self, files: [Vec<u8>; 4]) -> Result<Splits, String> {
        let mut arrays = Vec::with_capacity(4);
        for (file, bytes) in self.files().iter().zip(files) {
            let content = verify::check(&file.remote(), bytes, &identify)
                .map_err(|why| format!("{}: {why}", file.stem))?;
            let array =
                idx::parse(&content, file.magic).map_err(|why| format!("{}: {why}", file.stem))?;
            arrays.push(array);
        }
        let [train_images, train_labels, test_images, test_labels]: [_; 4] =
            arrays.try_into().expect("one array per file");
        let split = |name: &str, images, labels| {
            Dataset::from_idx(images, labels, self.classes.len())
                .map_err(|why| format!("the {name} files: {why}"))
        };
        Ok(Splits::new(
            split("training", train_images, train_labels)?,
            split("test", test_images, test_labels)?,
        ))
    }

    /// The four files: train images, train labels, test images, test labels.
    pub fn files(&self) -> [IdxFile; 4] {
        std::array::from_fn(|i| IdxFile {
            stem: STEMS[i],
            magic: if i % 2 == 0 {
                IMAGES_MAGIC
            } else {
                LABELS_MAGIC
            },
            sums: self.sums[i],
        })
    }

    /// The catalogue entry called `name`.
    pub fn named(name: &str) -> Option<&'static DataSet> {
        ALL.into_iter().find(|set| set.name == name)
    }

    /// The per-user cache directory of the data set: `name` in
    /// [`crate::user_cache_dir`].
    pub fn cache_dir(&self) -> Option<PathBuf> {
        Some(crate::user_cache_dir()?.join(self.name))
    }
}

/// Names what arrived when it is a file of the catalogue, e.g. `MNIST's
/// train-labels-idx1-ubyte`, so that a mirror serving the wrong data set is
/// told apart from a corrupt one.
pub fn identify(received: &Received) -> Option<String> {
    ALL.iter().find_map(|set| {
        set.files()
            .into_iter()
            .find(|f| f.digests().iter().any(|d| d.matches(received)))
            .map(|f| format!("{}'s {}", set.title, f.stem))
    })
}

/// MNIST (Y. LeCun, C. Cortes, C. Burges). Content sums: the upstream values
/// (the shared copy's `SHA256SUMS`, bit-for-bit the official data). Archive
/// sums and sizes: TensorFlow Datasets, `tensorflow_datasets/url_checksums/mnist.txt`.
pub const MNIST: DataSet = DataSet {
    name: "mnist",
    title: "MNIST",
    data_env: "GPU_MNIST_DATA",
    system_dirs: &[],
    mirrors: &[
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    sums: [
        FileSums {
            content: Some("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
            archive: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            archive_size: 9_912_422,
        },
        FileSums {
            content: Some("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
            archive: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            archive_size: 28_881,
        },
        FileSums {
            content: Some("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
            archive: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            archive_size: 1_648_877,
        },
        FileSums {
            content: Some("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
            archive: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            archive_size: 4_542,
        },
    ],
    classes: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
};

/// Fashion-MNIST (H. Xiao, K. Rasul, R. Vollgraf, Zalando Research, MIT
/// licence). Archive sums and sizes: TensorFlow Datasets,
/// `tensorflow_datasets/url_checksums/fashion_mnist.txt`. Content sums: of
/// Debian's `dataset-fashion-mnist` (0.0~git20200523.55506a9-1) files, which
/// hold upstream's deflate streams under a header without the file name:
/// restoring the name and upstream's 2017-08-31 mtimes gives TFDS's sums byte
/// for byte, so their content is upstream's.
pub const FASHION_MNIST: DataSet = DataSet {
    name: "fashion-mnist",
    title: "Fashion-MNIST",
    data_env: "GPU_MNIST_FASHION_MNIST_DATA",
    system_dirs: &["/usr/share/datasets/fashion-mnist"],
    mirrors: &[
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    sums: [
        FileSums {
            content: Some("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            archive: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            archive_size: 26_421_880,
        },
        FileSums {
            content: Some("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
            archive: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            archive_size: 29_515,
        },
        FileSums {
            content: Some("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            archive: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            archive_size: 4_422_102,
        },
        FileSums {
            content: Some("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
            archive: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            archive_size: 5_148,
        },
    ],
    classes: [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
};

/// Kuzushiji-MNIST (CODH, from NIJL's Kuzushiji Dataset, CC BY-SA 4.0): one
/// cursive hiragana per row of the syllabary. Archive sums and sizes:
/// TensorFlow Datasets, `tensorflow_datasets/url_checksums/kmnist.txt` (the
/// same sums as torchvision-ruby's `KMNIST`). No source publishes the content
/// sums, so only upstream's own `.gz` bytes pass. Classes: the order of
/// upstream's `kmnist_classmap.csv` (U+304A, U+304D, ... U+3092).
pub const KMNIST: DataSet = DataSet {
    name: "kmnist",
    title: "KMNIST",
    data_env: "GPU_MNIST_KMNIST_DATA",
    system_dirs: &[],
    mirrors: &["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
    sums: [
        FileSums {
            content: None,
            archive: "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
            archive_size: 18_165_135,
        },
        FileSums {
            content: None,
            archive: "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
            archive_size: 29_497,
        },
        FileSums {
            content: None,
            archive: "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
            archive_size: 3_041_136,
        },
        FileSums {
            content: None,
            archive: "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
            archive_size: 5_120,
        },
    ],
    classes: [
        "o (お)",
        "ki (き)",
        "su (す)",
        "tsu (つ)",
        "na (な)",
        "ha (は)",
        "ma (ま)",
        "ya (や)",
        "re (れ)",
        "wo (を)",
    ],
};

/// Every catalogue entry, MNIST first.
pub const ALL: [&DataSet; 3] = [&MNIST, &FASHION_MNIST, &KMNIST];

#[cfg(test)]
mod tests {
    use super::*;

    fn is_sha256(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    #[test]
    fn every_entry_is_complete_and_distinct() {
        let mut caches = Vec::new();
        let mut sums = Vec::new();
        for set in ALL {
            assert_eq!(DataSet::named(set.name), Some(set));
            assert_eq!(set.classes.len(), 10, "{}", set.name);
            assert!(set.classes.iter().all(|c| !c.is_empty()), "{}", set.name);
            let mut classes = set.classes.to_vec();
            classes.sort();
            classes.dedup();
            assert_eq!(classes.len(), 10, "{} has repeated class names", set.name);
            assert!(!set.mirrors.is_empty(), "{}", set.name);
            assert!(set.mirrors.iter().all(|m| m.ends_with('/')), "{}", set.name);
            let files = set.files();
            assert_eq!(files.len(), 4);
            for f in files {
                assert!(is_sha256(f.sums.archive), "{} {}", set.name, f.stem);
                assert!(
                    f.sums.content.is_none_or(is_sha256),
                    "{} {}",
                    set.name,
                    f.stem
                );
                assert!(f.sums.archive_size > 0);
                sums.push(f.sums.archive);
                sums.extend(f.sums.content);
            }
            caches.extend(set.cache_dir());
        }
        if crate::user_cache_dir().is_some() {
            caches.sort();
            caches.dedup();
            assert_eq!(caches.len(), ALL.len(), "cache directories must differ");
        }
        let count = sums.len();
        sums.sort();
        sums.dedup();
        assert_eq!(sums.len(), count, "no two files share a sum");
        assert_eq!(DataSet::named("cifar10"), None);
    }

    #[test]
    fn files_are_images_then_labels_for_train_then_test() {
        let stems = KMNIST.files().map(|f| (f.stem, f.magic));
        assert_eq!(
            stems,
            [
                ("train-images-idx3-ubyte", IMAGES_MAGIC),
                ("train-labels-idx1-ubyte", LABELS_MAGIC),
                ("t10k-images-idx3-ubyte", IMAGES_MAGIC),
                ("t10k-labels-idx1-ubyte", LABELS_MAGIC),
            ]
        );
    }

    #[test]
    fn identify_names_the_data_set_and_file() {
        let received = |bytes: &str, content: &str| Received {
            bytes: bytes.to_string(),
            size: 1,
            content: content.to_string(),
        };
        let mnist_labels = MNIST.sums[1].content.unwrap();
        assert_eq!(
            identify(&received("00", mnist_labels)).as_deref(),
            Some("MNIST's train-labels-idx1-ubyte")
        );
        let kmnist_test = Received {
            bytes: KMNIST.sums[3].archive.to_string(),
            size: KMNIST.sums[3].archive_size,
            content: "00".into(),
        };
        assert_eq!(
            identify(&kmnist_test).as_deref(),
            Some("KMNIST's t10k-labels-idx1-ubyte")
        );
        assert_eq!(identify(&received("00", "11")), None);
    }
}
