package checkpoint

import (
	"fmt"
	"io/fs"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// File is one file of a volume copy.
type File struct {
	Data []byte
	Mode fs.FileMode
}

// copyMode keeps the owner's bits of a requested mode and drops the group's
// and others': a copy on the host is for its pod alone. So defaultMode 0644
// becomes 0600, 0400 stays 0400, and 0755 becomes 0700.
func copyMode(m int32) fs.FileMode { return fs.FileMode(m) & 0o700 }

// Project lays out a volume copy the way the kubelet lays out the volume:
// every key as a file, or only the listed items at their paths and modes.
// data maps each source's name to its content; a missing entry is a source
// that does not exist.
func Project(vc VolumeCopy, data map[string]map[string][]byte) (map[string]File, error) {
	files := map[string]File{}
	for _, src := range vc.Sources {
		content, ok := data[src.Kind+"/"+src.Name]
		if !ok {
			if src.Optional {
				continue
			}
			return nil, fmt.Errorf("%s %q of volume %q does not exist", strings.ToLower(src.Kind), src.Name, vc.Volume)
		}
		if len(src.Items) == 0 {
			for k, v := range content {
				// A key becomes a file name: it must be one, as the API server requires.
				if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
					return nil, fmt.Errorf("%s %q of volume %q has key %q, which is not a file name: %s", strings.ToLower(src.Kind), src.Name, vc.Volume, k, errs[0])
				}
				files[k] = File{Data: v, Mode: copyMode(vc.DefaultMode)}
			}
			continue
		}
		for _, it := range src.Items {
			v, ok := content[it.Key]
			if !ok {
				if src.Optional {
					continue
				}
				return nil, fmt.Errorf("%s %q of volume %q has no key %q", strings.ToLower(src.Kind), src.Name, vc.Volume, it.Key)
			}
			p := path.Clean(it.Path)
			if path.IsAbs(p) || p == "." || strings.HasPrefix(p, "..") {
				return nil, fmt.Errorf("volume %q maps key %q to path %q, which leaves the volume or is reserved", vc.Volume, it.Key, it.Path)
			}
			mode := vc.DefaultMode
			if it.Mode != nil {
				mode = *it.Mode
			}
			files[p] = File{Data: v, Mode: copyMode(mode)}
		}
	}
	return files, nil
}
