//! Run directories in object storage: `s3://bucket/prefix`, `az://container/prefix` (also
//! `abfs://`, `abfss://`) and `gs://bucket/prefix`, through the `object_store` crate.
//!
//! A run is always written to a local directory first (the writer, the journal and resume work on
//! files); a remote location is where it is uploaded when it ends and downloaded from when a
//! command needs it (resuming a shard in a new pod, merging shards). Credentials and endpoints
//! come from the standard variables of each cloud, read by `object_store`'s `from_env`:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL` (an
//! S3-compatible server such as MinIO), `AWS_ALLOW_HTTP`; `AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, ...; `GOOGLE_SERVICE_ACCOUNT`, ....

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

/// Uploads and downloads in flight at once.
const TRANSFERS: usize = 16;

/// Why object storage could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL is not one `flow` can open.
    #[error(
        "'{url}' is not an object storage URL flow can open: {reason} (use s3://bucket/prefix, az://container/prefix or gs://bucket/prefix)"
    )]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The store refused or failed a request.
    #[error(
        "{url}: {source} (check the storage credentials and endpoint variables, e.g. AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL)"
    )]
    Store {
        /// The object or prefix.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Classify for RemoteError {
    /// Object storage that cannot be used is an unusable endpoint (a Job retries it); a bad
    /// URL is configuration; a local file that cannot be read or written is I/O.
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            RemoteError::BadUrl { .. } => ErrorClass::Config,
            RemoteError::Store { .. } => ErrorClass::Endpoint,
            RemoteError::Local { .. } => ErrorClass::Io,
        }
    }
}

/// Whether `location` names object storage rather than a local path.
pub fn is_remote(location: &str) -> bool {
    ["s3://", "az://", "abfs://", "abfss://", "gs://"]
        .iter()
        .any(|scheme| location.starts_with(scheme))
}

/// A folder in object storage (a run directory, or a folder of them).
#[derive(Debug, Clone)]
pub struct RemoteDir {
    store: Arc<dyn ObjectStore>,
    /// `scheme://bucket`, for messages and children.
    root: String,
    prefix: ObjectPath,
}

impl std::fmt::Display for RemoteDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.as_ref().is_empty() {
            write!(f, "{}", self.root)
        } else {
            write!(f, "{}/{}", self.root, self.prefix)
        }
    }
}

impl RemoteDir {
    /// Opens `url` (`s3://bucket/a/b`, `az://container/a`, `gs://bucket/a`) with credentials
    /// from the environment.
    pub fn parse(url: &str) -> Result<RemoteDir, RemoteError> {
        let bad = |reason: &str| RemoteError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let rest = rest.trim_end_matches('/');
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket or container"));
        }
        let root = format!("{scheme}://{bucket}");
        let store_err = |source| RemoteError::Store {
            url: url.to_string(),
            source,
        };
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(&root)
                    .build()
                    .map_err(store_err)?,
            ),
            "az" | "abfs" | "abfss" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(&root)
                    .build()
                    .map_err(store_err)?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(&root)
                    .build()
                    .map_err(store_err)?,
            ),
            _ => return Err(bad(&format!("unknown scheme '{scheme}'"))),
        };
        Ok(RemoteDir {
            store,
            root,
            prefix: ObjectPath::from(prefix),
        })
    }

    /// The folder `name` inside this one.
    pub fn child(&self, name: &str) -> RemoteDir {
        RemoteDir {
            store: self.store.clone(),
            root: self.root.clone(),
            prefix: self.prefix.child(name),
        }
    }

    /// The last segment of the folder's path (a run's name).
    pub fn name(&self) -> String {
        self.prefix
            .parts()
            .last()
            .map(|p| p.as_ref().to_string())
            .unwrap_or_default()
    }

    fn err(&self, source: object_store::Error) -> RemoteError {
        RemoteError::Store {
            url: self.to_string(),
            source,
        }
    }

    /// Whether a file `rel` (e.g. `meta.json`) exists in this folder.
    pub async fn has(&self, rel: &str) -> Result<bool, RemoteError> {
        match self.store.head(&self.location(Path::new(rel))).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// The contents of the file `rel` (e.g. `meta.json`, `flow_artifacts/x.jsonl`) in this
    /// folder, or `None` when there is none.
    pub async fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        match self.store.get(&self.location(Path::new(rel))).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(|e| self.err(e))?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// The object `rel` (a relative file path) of this folder.
    fn location(&self, rel: &Path) -> ObjectPath {
        rel.iter().fold(self.prefix.clone(), |p, part| {
            p.child(part.to_string_lossy().as_ref())
        })
    }

    /// Writes `bytes` as the file `rel` of this folder.
    pub async fn put(&self, rel: &Path, bytes: Vec<u8>) -> Result<(), RemoteError> {
        self.store
            .put(&self.location(rel), bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Removes the file `rel` of this folder (a missing one is no error).
    pub async fn delete(&self, rel: &Path) -> Result<(), RemoteError> {
        match self.store.delete(&self.location(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Every file under this folder, as paths relative to it.
    pub async fn files(&self) -> Result<Vec<PathBuf>, RemoteError> {
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        let prefix_parts = self.prefix.parts().count();
        Ok(objects
            .iter()
            .map(|meta| {
                meta.location
                    .parts()
                    .skip(prefix_parts)
                    .fold(PathBuf::new(), |mut p, part| {
                        p.push(part.as_ref());
                        p
                    })
            })
            .collect())
    }

    /// The folders directly inside this one, sorted.
    pub async fn children(&self) -> Result<Vec<String>, RemoteError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| self.err(e))?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.parts().last().map(|s| s.as_ref().to_string()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Copies every object under this folder into `dest` (created), keeping relative paths.
    /// Returns how many files were written.
    pub async fn download(&self, dest: &Path) -> Result<usize, RemoteError> {
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        let prefix_parts = self.prefix.parts().count();
        let jobs = objects.into_iter().map(|meta| {
            let rel: PathBuf =
                meta.location
                    .parts()
                    .skip(prefix_parts)
                    .fold(PathBuf::new(), |mut p, part| {
                        p.push(part.as_ref());
                        p
                    });
            let target = dest.join(rel);
            async move {
                let bytes = self
                    .store
                    .get(&meta.location)
                    .await
                    .map_err(|e| self.err(e))?
                    .bytes()
                    .await
                    .map_err(|e| self.err(e))?;
                let local = |source| RemoteError::Local {
                    path: target.clone(),
                    source,
                };
                if let Some(parent) = target.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(local)?;
                }
                tokio::fs::write(&target, &bytes).await.map_err(local)?;
                Ok::<_, RemoteError>(())
            }
        });
        let done: Vec<()> = futures::stream::iter(jobs)
            .buffer_unordered(TRANSFERS)
            .try_collect()
            .await?;
        Ok(done.len())
    }

    /// Copies every file under `src` into this folder, keeping relative paths (`meta.json`
    /// last, so a reader that sees it sees a whole run). Returns how many files were written.
    pub async fn upload(&self, src: &Path) -> Result<usize, RemoteError> {
        let mut files = Vec::new();
        collect_files(src, Path::new(""), &mut files).map_err(|source| RemoteError::Local {
            path: src.to_path_buf(),
            source,
        })?;
        let (meta, rest): (Vec<PathBuf>, Vec<PathBuf>) = files
            .into_iter()
            .partition(|rel| rel.as_path() == Path::new("meta.json"));
        let put = |rel: PathBuf| {
            let path = src.join(&rel);
            let location = rel.iter().fold(self.prefix.clone(), |p, part| {
                p.child(part.to_string_lossy().as_ref())
            });
            async move {
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|source| RemoteError::Local {
                        path: path.clone(),
                        source,
                    })?;
                self.store
                    .put(&location, bytes.into())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok::<_, RemoteError>(())
            }
        };
        let mut count: usize = futures::stream::iter(rest.into_iter().map(put))
            .buffer_unordered(TRANSFERS)
            .try_collect::<Vec<()>>()
            .await?
            .len();
        for rel in meta {
            put(rel).await?;
            count += 1;
        }
        Ok(count)
    }
}

/// Every file under `root/rel`, as paths relative to `root`, but a run's lock file: it says
/// which process on which machine writes the run, which is true only where it was written.
pub(super) fn collect_files(
    root: &Path,
    rel: &Path,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let name = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            collect_files(root, &name, out)?;
        } else if name != Path::new(super::LOCK_FILE) {
            out.push(name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_locations_are_told_from_local_paths() {
        assert!(is_remote("s3://bucket/runs"));
        assert!(is_remote("gs://b/x"));
        assert!(is_remote("az://container/x"));
        assert!(!is_remote(".flow/runs/x"));
        assert!(!is_remote("/abs/s3://x"));
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        let e = RemoteDir::parse("ftp://x/y").unwrap_err().to_string();
        assert!(e.contains("unknown scheme 'ftp'"), "{e}");
        let e = RemoteDir::parse("s3:///runs").unwrap_err().to_string();
        assert!(e.contains("no bucket"), "{e}");
    }
}
