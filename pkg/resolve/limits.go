package resolve

import (
	"github.com/veil-dev/veil/pkg/providers"
)

// MaxValueBytes bounds the data of one ExternalSecretValue: a Secret can
// hold no more (kube-apiserver refuses larger objects), so values that
// could never be materialised are refused before a response is built or
// encoded, rather than costing the server memory for every reader.
const MaxValueBytes = 1 << 20

// checkSize refuses data that adds up to more than MaxValueBytes.
func checkSize(data map[string][]byte) error {
	total := 0
	for k, v := range data {
		total += len(k) + len(v)
	}
	if total > MaxValueBytes {
		return providers.Errorf(providers.Invalid, "its values add up to %d bytes, more than the %d (1 MiB) a Secret can hold; read fewer keys, or split it into several ExternalSecrets", total, MaxValueBytes)
	}
	return nil
}
