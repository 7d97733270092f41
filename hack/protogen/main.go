// Command protogen generates Go code from .proto files without protoc: it
// parses them with github.com/bufbuild/protocompile and runs the protoc
// plugins (protoc-gen-go, protoc-gen-go-grpc, at the versions go.mod's tool
// block pins) on the result, as protoc would. hack/update-codegen.sh runs it.
//
//	go run ./hack/protogen -root DIR -plugin protoc-gen-go -plugin protoc-gen-go-grpc FILE.proto...
//
// FILEs are relative to DIR, and so is the generated code
// (paths=source_relative).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

type plugins []string

func (p *plugins) String() string     { return strings.Join(*p, ",") }
func (p *plugins) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	root := flag.String("root", ".", "the directory .proto imports are relative to, and the generated files go under")
	var ps plugins
	flag.Var(&ps, "plugin", "a protoc plugin to run with `go tool` (repeatable)")
	flag.Parse()
	if err := run(*root, ps, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "protogen:", err)
		os.Exit(1)
	}
}

func run(root string, ps []string, files []string) error {
	if len(files) == 0 || len(ps) == 0 {
		return errors.New("name at least one -plugin and one .proto file")
	}
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{root}}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	compiled, err := c.Compile(context.Background(), files...)
	if err != nil {
		return err
	}
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: files,
		Parameter:      proto.String("paths=source_relative"),
		ProtoFile:      withDependencies(compiled),
	}
	for _, p := range ps {
		if err := generate(root, p, req); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// withDependencies lists the files and everything they import, each after
// its imports, as a CodeGeneratorRequest must.
func withDependencies(files linker.Files) []*descriptorpb.FileDescriptorProto {
	var out []*descriptorpb.FileDescriptorProto
	seen := map[string]bool{}
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		out = append(out, protodesc.ToFileDescriptorProto(f))
	}
	for _, f := range files {
		add(f)
	}
	return out
}

// generate runs one plugin on req and writes the files it returns.
func generate(root, plugin string, req *pluginpb.CodeGeneratorRequest) error {
	in, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command("go", "tool", plugin)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &out, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, stderr.String())
	}
	var resp pluginpb.CodeGeneratorResponse
	if err := proto.Unmarshal(out.Bytes(), &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return errors.New(resp.GetError())
	}
	for _, f := range resp.File {
		if f.GetInsertionPoint() != "" {
			return fmt.Errorf("%s: insertion points are not supported", f.GetName())
		}
		path := filepath.Join(root, filepath.FromSlash(f.GetName()))
		if err := os.WriteFile(path, []byte(f.GetContent()), 0o644); err != nil {
			return err
		}
	}
	return nil
}
