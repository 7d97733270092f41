package convert

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// MaxDocumentBytes bounds one YAML document read.
const MaxDocumentBytes = 4 << 20

// Read decodes every object of a YAML or JSON stream of documents; a List
// is read as its items. Empty documents are skipped.
func Read(r io.Reader) ([]*unstructured.Unstructured, error) {
	d := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(io.LimitReader(r, 64*MaxDocumentBytes)), MaxDocumentBytes)
	var out []*unstructured.Unstructured
	for i := 1; ; i++ {
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		// Whole numbers as int64, as kube-apiserver decodes them: CEL
		// rules on integer fields refuse float64.
		var obj map[string]any
		if len(raw) > 0 && string(raw) != "null" {
			if err := utiljson.Unmarshal(raw, &obj); err != nil {
				return nil, fmt.Errorf("document %d: %w", i, err)
			}
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", i, err)
			}
			for j := range list.Items {
				out = append(out, &list.Items[j])
			}
			continue
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("document %d has no kind or apiVersion", i)
		}
		out = append(out, u)
	}
}

// Write prints objects as YAML documents, each after the differences
// found for it, as comments.
func Write(w io.Writer, objs []*unstructured.Unstructured, diffs map[*unstructured.Unstructured][]Difference) error {
	for i, o := range objs {
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		for _, d := range diffs[o] {
			if _, err := fmt.Fprintf(w, "# veil convert: %s\n", oneLine(d.String())); err != nil {
				return err
			}
		}
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
