/**
 * Errors of `@mnemo/hub`. Every message names the repo (and file) concerned and says what to do next.
 * All of them extend `HubError`, so a caller can catch the family with one `instanceof`.
 */

export class HubError extends Error {
  override name = 'HubError';
}

/** The argument is neither an existing local directory nor a repo id `owner/name[@revision]`. */
export class ModelIdError extends HubError {
  override name = 'ModelIdError';
}

/** 404 RepoNotFound, or 401 without a usable token (the Hub hides private repos behind 401). */
export class RepoNotFoundError extends HubError {
  override name = 'RepoNotFoundError';
  constructor(
    message: string,
    readonly repo: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** The repo exists but is gated: its terms must be accepted on the Hub and a token of that account used. */
export class GatedRepoError extends HubError {
  override name = 'GatedRepoError';
  constructor(
    message: string,
    readonly repo: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** 401/403 that is neither "repo not found" nor "gated": typically an invalid or under-privileged token. */
export class UnauthorizedError extends HubError {
  override name = 'UnauthorizedError';
  constructor(
    message: string,
    readonly repo: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** 404 RevisionNotFound: the branch, tag or commit does not exist in the repo. */
export class RevisionNotFoundError extends HubError {
  override name = 'RevisionNotFoundError';
  constructor(
    message: string,
    readonly repo: string,
    readonly revision: string,
  ) {
    super(message);
  }
}

/** 404 EntryNotFound: a file listed in the tree could not be downloaded. */
export class EntryNotFoundError extends HubError {
  override name = 'EntryNotFoundError';
  constructor(
    message: string,
    readonly repo: string,
    readonly file: string,
  ) {
    super(message);
  }
}

/** Any other unexpected HTTP status from the Hub. */
export class HubHttpError extends HubError {
  override name = 'HubHttpError';
  constructor(
    message: string,
    readonly status: number,
    readonly url: string,
  ) {
    super(message);
  }
}

/** The Hub could not be reached at all (DNS, refused connection, TLS...), and nothing usable is cached. */
export class HubConnectionError extends HubError {
  override name = 'HubConnectionError';
}

/** Offline mode (or an unreachable Hub) and the model is not (completely) in the cache. */
export class NotInCacheError extends HubError {
  override name = 'NotInCacheError';
  constructor(
    message: string,
    readonly repo: string,
    readonly revision: string,
    readonly cacheDir: string,
  ) {
    super(message);
  }
}

/** A downloaded file does not match the size or hash the tree listing announced; it was not kept. */
export class IntegrityError extends HubError {
  override name = 'IntegrityError';
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(message);
  }
}

/** The connection kept dropping; the partial file stays as `blobs/<etag>.incomplete` for the next run. */
export class DownloadInterruptedError extends HubError {
  override name = 'DownloadInterruptedError';
  constructor(
    message: string,
    readonly file: string,
    readonly bytesOnDisk: number,
  ) {
    super(message);
  }
}
