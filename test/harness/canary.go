package harness

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Sightings says where a canary value was found.
type Sightings struct {
	// EtcdKeys are the etcd keys whose stored bytes contain it.
	EtcdKeys []string
	// Files maps every log file searched (component logs and audit logs)
	// to the number of times it appears there.
	Files map[string]int
}

// Total is the number of sightings in files plus etcd keys.
func (s Sightings) Total() int {
	n := len(s.EtcdKeys)
	for _, c := range s.Files {
		n += c
	}
	return n
}

// InFiles is the number of sightings in files.
func (s Sightings) InFiles() int { return s.Total() - len(s.EtcdKeys) }

func (s Sightings) String() string {
	var files []string
	for f, n := range s.Files {
		if n > 0 {
			files = append(files, fmt.Sprintf("%s:%d", filepath.Base(f), n))
		}
	}
	sort.Strings(files)
	return fmt.Sprintf("etcd keys %v, files %v", s.EtcdKeys, files)
}

// canaryForms are the ways a value could be written down: as it is, and
// base64-encoded as in a Secret or an ExternalSecretValue's data.
func canaryForms(value string) [][]byte {
	return [][]byte{[]byte(value), []byte(base64.StdEncoding.EncodeToString([]byte(value))), []byte(base64.RawURLEncoding.EncodeToString([]byte(value)))}
}

// FindCanary searches every key of etcd and every log the cluster wrote —
// etcd's, kube-apiserver's, veil-apiserver's, kube-controller-manager's and
// any other process log under logs/, and both audit logs — for value.
// Processes flush their logs as they write; the audit logs are written
// synchronously by the default (blocking) backend.
func (c *Cluster) FindCanary(ctx context.Context, value string) (Sightings, error) {
	s := Sightings{Files: map[string]int{}}
	forms := canaryForms(value)

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.EtcdURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		return s, err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		return s, fmt.Errorf("reading etcd: %w", err)
	}
	for _, kv := range resp.Kvs {
		for _, f := range forms {
			if bytes.Contains(kv.Value, f) || bytes.Contains(kv.Key, f) {
				s.EtcdKeys = append(s.EtcdKeys, string(kv.Key))
				break
			}
		}
	}

	files, err := filepath.Glob(filepath.Join(c.Dir, "logs", "*"))
	if err != nil {
		return s, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return s, err
		}
		n := 0
		for _, form := range forms {
			n += bytes.Count(b, form)
		}
		s.Files[f] = n
	}
	for _, must := range []string{c.AuditLog, c.VeilAuditLog} {
		if _, ok := s.Files[must]; !ok {
			return s, fmt.Errorf("audit log %s was not written", must)
		}
	}
	return s, nil
}
