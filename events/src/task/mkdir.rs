//! Whether a `mkdir` may succeed, and which directories it brings into existence, decided from
//! what the catalogue holds on the path and its ancestors, so the worker looks them all up at
//! once (one query) and decides here, without IO.
//!
//! Only available entries count as existing at the path itself and at a plain `mkdir`'s
//! parent (an upload still being scanned is not there yet); a file above a `mkdir -p` blocks
//! it unless it is still being scanned (a quarantined file is there, and stays a file).

use super::event::TaskFailure;
use crate::FilePath;

/// What the catalogue holds at one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    Dir,
    File(FileState),
}

/// The state of a file entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileState {
    Available,
    Scanning,
    Quarantined,
}

/// The paths whose entries [`decide`] needs: the path and its ancestors, never the root.
pub fn paths_to_look_up(path: &FilePath) -> Vec<FilePath> {
    path.ancestors_and_self().filter(|p| !p.is_root()).collect()
}

/// The strict ancestors of `path` (never the root) that are not directories yet, top down:
/// what creating `path` with its parents brings into existence (a `mkdir -p`, an upload).
/// `held` answers for the paths of [`paths_to_look_up`].
pub fn missing_parents(path: &FilePath, held: impl Fn(&FilePath) -> Option<Held>) -> Vec<FilePath> {
    paths_to_look_up(path)
        .into_iter()
        .filter(|a| a != path && held(a) != Some(Held::Dir))
        .collect()
}

/// The nearest strict ancestor of `path` (never the root) that is a file, available or
/// quarantined: nothing can be created below it. An upload's placeholder (`scanning`) is not
/// there yet. `held` answers for the paths of [`paths_to_look_up`].
pub fn file_above(path: &FilePath, held: impl Fn(&FilePath) -> Option<Held>) -> Option<FilePath> {
    paths_to_look_up(path).into_iter().rev().find(|a| {
        a != path
            && matches!(
                held(a),
                Some(Held::File(FileState::Available | FileState::Quarantined))
            )
    })
}

/// The directories above `path` that `mkdir` (with `parents`) brings into existence, top
/// down, or why it fails. `held` answers for the paths of [`paths_to_look_up`].
pub fn decide(
    path: &FilePath,
    parents: bool,
    held: impl Fn(&FilePath) -> Option<Held>,
) -> Result<Vec<FilePath>, TaskFailure> {
    let available = |p: &FilePath| -> Option<Held> {
        if p.is_root() {
            return Some(Held::Dir);
        }
        match held(p) {
            Some(Held::Dir) => Some(Held::Dir),
            Some(Held::File(FileState::Available)) => Some(Held::File(FileState::Available)),
            _ => None,
        }
    };
    let exists = || TaskFailure::new("already_exists", format!("{path} already exists"));
    match available(path) {
        Some(Held::Dir) if parents => {}
        Some(_) => return Err(exists()),
        None => {}
    }
    if parents {
        if let Some(file) = file_above(path, &held) {
            return Err(TaskFailure::new(
                "conflict",
                format!("{file} is not a directory"),
            ));
        }
        return Ok(missing_parents(path, held));
    }
    if let Some(parent) = path.parent() {
        match available(&parent) {
            Some(Held::Dir) => {}
            Some(Held::File(_)) => {
                return Err(TaskFailure::new(
                    "conflict",
                    format!("{parent} is not a directory"),
                ))
            }
            None => {
                return Err(TaskFailure::new(
                    "not_found",
                    format!("{parent} does not exist"),
                ))
            }
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn p(s: &str) -> FilePath {
        FilePath::parse(s).unwrap()
    }

    fn catalogue(entries: &[(&str, Held)]) -> impl Fn(&FilePath) -> Option<Held> {
        let map: HashMap<String, Held> = entries
            .iter()
            .map(|(path, held)| ((*path).to_owned(), *held))
            .collect();
        move |path: &FilePath| map.get(path.as_str()).copied()
    }

    const AVAILABLE: Held = Held::File(FileState::Available);
    const SCANNING: Held = Held::File(FileState::Scanning);
    const QUARANTINED: Held = Held::File(FileState::Quarantined);

    fn code(r: Result<Vec<FilePath>, TaskFailure>) -> String {
        r.map(|_| "ok".to_owned()).unwrap_or_else(|f| f.code)
    }

    #[test]
    fn mkdir_p_reports_the_missing_ancestors_top_down() {
        let held = catalogue(&[("/a", Held::Dir)]);
        let created = decide(&p("/a/b/c/d"), true, held).unwrap();
        assert_eq!(created, vec![p("/a/b"), p("/a/b/c")]);
        let nothing = decide(&p("/x"), true, catalogue(&[])).unwrap();
        assert!(nothing.is_empty());
    }

    #[test]
    fn an_existing_path_fails_unless_it_is_a_directory_made_with_parents() {
        let held = catalogue(&[("/a", Held::Dir), ("/f", AVAILABLE)]);
        assert_eq!(code(decide(&p("/a"), false, &held)), "already_exists");
        assert_eq!(code(decide(&p("/a"), true, &held)), "ok");
        assert_eq!(code(decide(&p("/f"), true, &held)), "already_exists");
        assert_eq!(code(decide(&p("/f"), false, &held)), "already_exists");
        // A file still being scanned or quarantined is not available there.
        let pending = catalogue(&[("/s", SCANNING), ("/q", QUARANTINED)]);
        assert_eq!(code(decide(&p("/s"), false, &pending)), "ok");
        assert_eq!(code(decide(&p("/q"), false, &pending)), "ok");
    }

    #[test]
    fn a_file_above_blocks_mkdir_p_unless_it_is_still_being_scanned() {
        for (file, expected) in [(AVAILABLE, "conflict"), (QUARANTINED, "conflict")] {
            let held = catalogue(&[("/a", Held::Dir), ("/a/f", file)]);
            let failure = decide(&p("/a/f/x/y"), true, held).unwrap_err();
            assert_eq!(failure.code, expected);
            assert_eq!(failure.message, "/a/f is not a directory");
        }
        // The deepest file is named.
        let held = catalogue(&[("/f", AVAILABLE), ("/f/g", AVAILABLE)]);
        let failure = decide(&p("/f/g/h"), true, held).unwrap_err();
        assert_eq!(failure.message, "/f/g is not a directory");
        let scanning = catalogue(&[("/a", SCANNING)]);
        assert_eq!(decide(&p("/a/b"), true, scanning).unwrap(), vec![p("/a")]);
    }

    #[test]
    fn a_plain_mkdir_needs_an_available_directory_as_parent() {
        let held = catalogue(&[("/d", Held::Dir), ("/f", AVAILABLE), ("/s", SCANNING)]);
        assert_eq!(code(decide(&p("/d/x"), false, &held)), "ok");
        assert_eq!(
            code(decide(&p("/x"), false, &held)),
            "ok",
            "the root is a directory"
        );
        let failure = decide(&p("/f/x"), false, &held).unwrap_err();
        assert_eq!(
            (failure.code.as_str(), failure.message.as_str()),
            ("conflict", "/f is not a directory")
        );
        let failure = decide(&p("/s/x"), false, &held).unwrap_err();
        assert_eq!(
            (failure.code.as_str(), failure.message.as_str()),
            ("not_found", "/s does not exist")
        );
        assert_eq!(code(decide(&p("/none/x"), false, &held)), "not_found");
        // Without parents nothing above is created.
        assert!(decide(&p("/d/x"), false, &held).unwrap().is_empty());
    }

    proptest::proptest! {
        /// Whatever the catalogue holds on the way, a `mkdir -p` that succeeds reports exactly
        /// the strict ancestors that are not directories yet, top down, and one that fails
        /// names an entry that really is there.
        #[test]
        fn mkdir_p_reports_exactly_what_is_missing(
            depth in 1usize..6,
            states in proptest::collection::vec(0u8..5, 6),
        ) {
            let path = p(&(0..depth).map(|i| format!("/s{i}")).collect::<String>());
            let entries: Vec<(String, Held)> = paths_to_look_up(&path)
                .iter()
                .zip(&states)
                .filter_map(|(a, s)| {
                    let held = match s {
                        0 => Held::Dir,
                        1 => AVAILABLE,
                        2 => SCANNING,
                        3 => QUARANTINED,
                        _ => return None,
                    };
                    Some((a.as_str().to_owned(), held))
                })
                .collect();
            let refs: Vec<(&str, Held)> = entries.iter().map(|(a, h)| (a.as_str(), *h)).collect();
            let held = catalogue(&refs);
            match decide(&path, true, &held) {
                Ok(created) => {
                    let expected: Vec<FilePath> = paths_to_look_up(&path)
                        .into_iter()
                        .filter(|a| a != &path && held(a) != Some(Held::Dir))
                        .collect();
                    proptest::prop_assert_eq!(&created, &expected);
                    proptest::prop_assert!(created.windows(2).all(|w| w[0].contains(&w[1])));
                }
                Err(f) => proptest::prop_assert!(
                    f.code == "already_exists" || f.code == "conflict",
                    "{}", f.code
                ),
            }
        }
    }
}
