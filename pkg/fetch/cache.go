package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kaic-dev/kaic/pkg/atomicfile"
)

// ErrNotCached is returned when the cache is offline and holds no copy of
// the requested content.
var ErrNotCached = errors.New("not in the cache and downloads are disabled (offline)")

// Cache stores downloads under Dir:
//
//	Dir/sha256/<digest>     content, named by its sha256 digest
//	Dir/url/<key>.json      the last good copy of an unpinned URL: its digest
//	                        and the validators (ETag, Last-Modified) to revalidate it
//
// A download is written to a temporary file in Dir and renamed into place
// only once it is complete and, when pinned, its digest matches, so the cache
// never holds partial or unverified content.
type Cache struct {
	// Dir is the cache directory; it is created on first write.
	Dir string
	// Client downloads missing content; nil means New().
	Client *Client
	// Offline serves only what is already cached and never makes a request.
	Offline bool
}

// EntryStatus says where the content of an Entry came from.
type EntryStatus string

const (
	// Downloaded: the server sent the content in this call.
	Downloaded EntryStatus = "downloaded"
	// NotModified: the server confirmed the cached copy is current.
	NotModified EntryStatus = "not-modified"
	// Cached: the cached copy was used without asking the server, because the
	// cache is offline or the server could not be reached. It may be out of
	// date.
	Cached EntryStatus = "cached"
)

// Entry describes the cached copy of a URL returned by Cache.Get.
type Entry struct {
	URL          string
	Path         string // file holding the content; read it, do not modify it
	SHA256       string
	ETag         string
	LastModified string
	// Updated is when the server last sent or confirmed this content.
	Updated time.Time
	Status  EntryStatus
	// Err is why the server was not used when Status is Cached and a request
	// was attempted; nil when the cache is offline by choice.
	Err error
}

// DefaultDir returns ${XDG_CACHE_HOME:-~/.cache}/kaic.
func DefaultDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("locating the cache directory: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "kaic"), nil
}

// NormalizeSHA256 accepts a hex sha256 digest, optionally prefixed with
// "sha256:", and returns it in lower case without the prefix.
func NormalizeSHA256(sum string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(sum, "sha256:")))
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("invalid sha256 digest %q: want 64 hex digits", sum)
	}
	return s, nil
}

// Lookup returns the path of the cached content with the given digest, if
// present and intact.
func (c *Cache) Lookup(sum string) (string, bool) {
	sum, err := NormalizeSHA256(sum)
	if err != nil {
		return "", false
	}
	path := c.blobPath(sum)
	got, err := fileSHA256(path)
	if err != nil || got != sum {
		return "", false
	}
	return path, true
}

// Pinned returns the path of the content of rawURL whose sha256 digest is
// sum. Cached content is returned without a request; otherwise it is
// downloaded, verified and stored. Content that does not match sum is
// refused and not stored.
func (c *Cache) Pinned(ctx context.Context, rawURL, sum string) (string, error) {
	if c.Dir == "" {
		return "", errors.New("fetch: cache directory not set")
	}
	sum, err := NormalizeSHA256(sum)
	if err != nil {
		return "", err
	}
	path := c.blobPath(sum)
	if got, err := fileSHA256(path); err == nil {
		if got == sum {
			c.client().logger.Debug("cache hit", "url", redact(rawURL), "sha256", sum)
			return path, nil
		}
		// Corrupted on disk: drop it and fetch again.
		c.client().logger.Warn("cached file is corrupt, downloading again", "path", path, "sha256", got, "want", sum)
		_ = os.Remove(path)
	}
	if c.Offline {
		return "", fmt.Errorf("%s (sha256 %s): %w", redact(rawURL), sum, ErrNotCached)
	}
	dl, err := c.download(ctx, rawURL, nil, sum)
	if err != nil {
		return "", err
	}
	if err := c.store(dl.tmp, sum); err != nil {
		return "", err
	}
	return path, nil
}

// Put stores content obtained some other way (an OCI registry client, a
// module proxy) under its digest and returns its path. With sum set, the
// content must have that sha256 digest: other content is refused with a
// *ChecksumError and not stored. With sum empty the content is stored under
// whatever digest it has. Like a download, it is written to a temporary file
// and renamed into place only once complete and verified; content already
// cached intact is not written again.
func (c *Cache) Put(r io.Reader, sum string) (string, error) {
	if c.Dir == "" {
		return "", errors.New("fetch: cache directory not set")
	}
	if sum != "" {
		var err error
		if sum, err = NormalizeSHA256(sum); err != nil {
			return "", err
		}
		if p, ok := c.Lookup(sum); ok {
			// Drain r so that a caller streaming it sees the same outcome
			// whether or not the content was cached.
			got, err := readerSHA256(r)
			if err != nil {
				return "", fmt.Errorf("reading content: %w", err)
			}
			if got != sum {
				return "", &ChecksumError{Want: sum, Got: got}
			}
			return p, nil
		}
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return "", fmt.Errorf("creating cache directory: %w", err)
	}
	f, err := os.CreateTemp(c.Dir, ".put-*")
	if err != nil {
		return "", fmt.Errorf("creating temporary file: %w", err)
	}
	h := sha256.New()
	_, werr := io.Copy(io.MultiWriter(f, h), r)
	if werr == nil {
		werr = f.Chmod(0o644)
	}
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if sum != "" && got != sum {
		_ = os.Remove(f.Name())
		return "", &ChecksumError{Want: sum, Got: got}
	}
	if err := c.store(f.Name(), got); err != nil {
		return "", err
	}
	return c.blobPath(got), nil
}

func readerSHA256(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Get returns the content of an unpinned URL, keeping the last good copy.
// When a copy is cached it is revalidated with If-None-Match and
// If-Modified-Since. If the server cannot be reached (or the cache is
// Offline) the cached copy is returned with Status Cached, and a warning is
// logged. A definitive answer from the server, such as 404, is an error even
// when a copy is cached.
func (c *Cache) Get(ctx context.Context, rawURL string) (*Entry, error) {
	if c.Dir == "" {
		return nil, errors.New("fetch: cache directory not set")
	}
	log := c.client().logger
	prev, prevErr := c.loadMeta(rawURL)
	if prevErr != nil && !errors.Is(prevErr, os.ErrNotExist) {
		log.Warn("ignoring unusable cache entry", "url", redact(rawURL), "error", prevErr)
	}
	if c.Offline {
		if prev == nil {
			return nil, fmt.Errorf("%s: %w", redact(rawURL), ErrNotCached)
		}
		log.Warn("offline: using the cached copy, it may be out of date", "url", redact(rawURL), "updated", prev.Updated)
		return c.entry(prev, Cached, nil), nil
	}

	header := http.Header{}
	if prev != nil {
		if prev.ETag != "" {
			header.Set("If-None-Match", prev.ETag)
		}
		if prev.LastModified != "" {
			header.Set("If-Modified-Since", prev.LastModified)
		}
	}
	dl, err := c.download(ctx, rawURL, header, "")
	switch {
	case err != nil && prev != nil && fallbackAllowed(ctx, err):
		log.Warn("server unreachable: using the cached copy, it may be out of date",
			"url", redact(rawURL), "updated", prev.Updated, "error", err)
		return c.entry(prev, Cached, err), nil
	case err != nil:
		return nil, err
	case dl.status == http.StatusNotModified && prev != nil:
		prev.Updated = time.Now().UTC()
		if err := c.saveMeta(prev); err != nil {
			return nil, err
		}
		return c.entry(prev, NotModified, nil), nil
	}

	if err := c.store(dl.tmp, dl.sum); err != nil {
		return nil, err
	}
	m := &urlMeta{
		URL:          rawURL,
		SHA256:       dl.sum,
		ETag:         dl.etag,
		LastModified: dl.lastModified,
		Updated:      time.Now().UTC(),
	}
	if err := c.saveMeta(m); err != nil {
		return nil, err
	}
	return c.entry(m, Downloaded, nil), nil
}

// fallbackAllowed is false for a cancelled context and for a final 4xx
// answer (other than 408 and 429): those are not signs of being offline.
func fallbackAllowed(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var fe *Error
	if errors.As(err, &fe) && fe.Status >= 400 && fe.Status < 500 &&
		fe.Status != http.StatusRequestTimeout && fe.Status != http.StatusTooManyRequests {
		return false
	}
	return true
}

// client returns the configured Client or, without one, a default client.
func (c *Cache) client() *Client {
	if c.Client == nil {
		return New()
	}
	return c.Client
}

func (c *Cache) entry(m *urlMeta, status EntryStatus, err error) *Entry {
	return &Entry{
		URL:          m.URL,
		Path:         c.blobPath(m.SHA256),
		SHA256:       m.SHA256,
		ETag:         m.ETag,
		LastModified: m.LastModified,
		Updated:      m.Updated,
		Status:       status,
		Err:          err,
	}
}

// download is the result of one successful request through the cache.
type download struct {
	status       int
	tmp          string // temporary file holding the body, for a 200
	sum          string
	etag         string
	lastModified string
}

// download fetches rawURL into a temporary file in the cache directory. With
// want set, content with another digest is refused and removed.
func (c *Cache) download(ctx context.Context, rawURL string, header http.Header, want string) (*download, error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cache directory: %w", err)
	}
	dl := &download{}
	status, err := c.client().do(ctx, rawURL, header, func(resp *http.Response) error {
		tmp, sum, err := c.writeTemp(resp)
		if err != nil {
			return err
		}
		if want != "" && sum != want {
			_ = os.Remove(tmp)
			return &ChecksumError{Want: want, Got: sum}
		}
		dl.tmp, dl.sum = tmp, sum
		dl.etag = resp.Header.Get("ETag")
		dl.lastModified = resp.Header.Get("Last-Modified")
		return nil
	})
	if err != nil {
		if dl.tmp != "" {
			_ = os.Remove(dl.tmp)
		}
		return nil, err
	}
	dl.status = status
	return dl, nil
}

// writeTemp streams a body into a new temporary file while hashing it. The
// file is removed on any error, including a body shorter than announced.
func (c *Cache) writeTemp(resp *http.Response) (path, sum string, err error) {
	f, err := os.CreateTemp(c.Dir, ".download-*")
	if err != nil {
		return "", "", fmt.Errorf("creating temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), resp.Body)
	if err != nil {
		return "", "", fmt.Errorf("reading body: %w", err)
	}
	if err := checkLength(resp, n); err != nil {
		return "", "", err
	}
	if err := f.Chmod(0o644); err != nil {
		return "", "", err
	}
	if err := f.Close(); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

// store moves a verified temporary file to its content address.
func (c *Cache) store(tmp, sum string) error {
	dst := c.blobPath(sum)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("creating cache directory: %w", err)
	}
	defer os.Remove(tmp)
	err := atomicfile.WriteFunc(dst, 0o644, func(w io.Writer) error {
		f, err := os.Open(tmp)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("storing download in the cache: %w", err)
	}
	return nil
}

func (c *Cache) blobPath(sum string) string {
	return filepath.Join(c.Dir, "sha256", sum)
}

// urlMeta is what the cache remembers about an unpinned URL.
type urlMeta struct {
	URL          string    `json:"url"`
	SHA256       string    `json:"sha256"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"lastModified,omitempty"`
	Updated      time.Time `json:"updated"`
}

func (c *Cache) metaPath(rawURL string) string {
	key := sha256.Sum256([]byte(rawURL))
	return filepath.Join(c.Dir, "url", hex.EncodeToString(key[:])+".json")
}

// loadMeta returns the cached entry for rawURL if it exists and its content
// is intact.
func (c *Cache) loadMeta(rawURL string) (*urlMeta, error) {
	b, err := os.ReadFile(c.metaPath(rawURL))
	if err != nil {
		return nil, err
	}
	var m urlMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading cache entry: %w", err)
	}
	if m.URL != rawURL {
		return nil, fmt.Errorf("cache entry is for %s", redact(m.URL))
	}
	if _, ok := c.Lookup(m.SHA256); !ok {
		return nil, fmt.Errorf("cached content %s is missing or corrupt", m.SHA256)
	}
	return &m, nil
}

func (c *Cache) saveMeta(m *urlMeta) error {
	path := c.metaPath(m.URL)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating cache directory: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing cache entry: %w", err)
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
