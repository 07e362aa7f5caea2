package checkpointer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Config is everything Run needs; cmd/pod-checkpointer fills it from flags
// and the downward API.
type Config struct {
	Namespace    string // POD_NAMESPACE
	Node         string // NODE_NAME
	PodName      string // POD_NAME
	CheckpointOf string // CHECKPOINT_OF: empty in the DaemonSet pod, the parent's name in its checkpoint
	DaemonSet    string

	Disk        Disk
	CRIEndpoint string
	LockFile    string
	Listen      string // address of /healthz and /metrics

	Server            string // API server URL; empty reads it from KubeletKubeconfig
	KubeletKubeconfig string
	TokenFile         string
	CAFile            string

	Interval       time.Duration
	BusyInterval   time.Duration // while a checkpoint waits to activate or to hand over
	Grace          checkpoint.Grace
	MinStable      time.Duration
	RefreshEvery   time.Duration
	TokenLifetime  time.Duration
	HeartbeatEvery time.Duration
}

// Self is the parent pod whose checkpoint this process is or would be.
func (c Config) Self() string {
	if c.CheckpointOf != "" {
		return c.CheckpointOf
	}
	return c.PodName
}

// Validate rejects a configuration that cannot work, in one sentence.
func (c Config) Validate() error {
	switch {
	case c.Namespace == "" || c.Node == "" || c.PodName == "":
		return errors.New("POD_NAMESPACE, NODE_NAME and POD_NAME must be set through the downward API")
	case c.Interval <= 0 || c.BusyInterval <= 0:
		return errors.New("--interval and --busy-interval must be positive")
	case c.TokenFile == "" || c.CAFile == "":
		return errors.New("--token-file and --ca-file are required")
	case c.TokenLifetime < 10*time.Minute:
		return errors.New("--checkpoint-token-lifetime must be at least 10m, the API server's minimum")
	}
	return nil
}

// APIServer is the API server URL: --server, or else the server of the
// kubelet's kubeconfig. That is the endpoint the node itself trusts, and it
// depends on neither kube-proxy nor cluster DNS.
func APIServer(c Config) (string, error) {
	if c.Server != "" {
		return c.Server, nil
	}
	return kubeconfigServer(c.KubeletKubeconfig)
}

func kubeconfigServer(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the API server address from %s: %w", path, err)
	}
	var kc struct {
		CurrentContext string `json:"current-context"`
		Contexts       []struct {
			Name    string `json:"name"`
			Context struct {
				Cluster string `json:"cluster"`
			} `json:"context"`
		} `json:"contexts"`
		Clusters []struct {
			Name    string `json:"name"`
			Cluster struct {
				Server string `json:"server"`
			} `json:"cluster"`
		} `json:"clusters"`
	}
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return "", fmt.Errorf("%s is not a kubeconfig: %w", path, err)
	}
	cluster := ""
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			cluster = c.Context.Cluster
		}
	}
	for _, c := range kc.Clusters {
		if c.Name == cluster || (cluster == "" && len(kc.Clusters) == 1) {
			if c.Cluster.Server != "" {
				return c.Cluster.Server, nil
			}
		}
	}
	return "", fmt.Errorf("%s names no API server for its current context %q", path, kc.CurrentContext)
}

// Run acts for this node until ctx ends: wait for the lock, reconcile every
// Interval (BusyInterval while a checkpoint waits to activate or to hand
// over) while serving /healthz and /metrics, and hand the lock back when this
// is the static copy and the DaemonSet pod runs again.
func Run(ctx context.Context, c Config, log *slog.Logger) error {
	if err := c.Validate(); err != nil {
		return err
	}
	// cri-client logs through klog's contextual logger: hand it ours, per
	// context rather than through klog's process-wide setting.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(log.Handler()))
	api := &lazyAPI{build: func() (API, error) {
		server, err := APIServer(c)
		if err != nil {
			return nil, err
		}
		return NewClientAPI(server, c.TokenFile, c.CAFile, c.Namespace, c.Node, c.DaemonSet)
	}}
	cri, err := DialCRI(ctx, c.CRIEndpoint, 10*time.Second)
	if err != nil {
		return err
	}
	clk := clock.RealClock{}
	r := &Reconciler{
		Runtime: cri,
		API:     api,
		Store:   c.Disk,
		Metrics: NewMetrics(),
		Log:     log,
		Clock:   clk,

		Namespace: c.Namespace, Node: c.Node, PodName: c.PodName, Self: c.Self(), DaemonSet: c.DaemonSet,
		SecretDir: c.Disk.SecretDir,
		Grace:     c.Grace, MinStable: c.MinStable, RefreshEvery: c.RefreshEvery, TokenLifetime: c.TokenLifetime, HeartbeatEvery: c.HeartbeatEvery,
		Probe: LocalProbe(2 * time.Second),
	}
	lock := &Lock{Path: c.LockFile, Clock: clk}
	for {
		log.Info("waiting for the lock", "lock", c.LockFile)
		if err := lock.Acquire(ctx, time.Second); err != nil {
			return nil // ctx ended
		}
		log.Info("acting for the node", "node", c.Node, "pod", c.PodName, "self", c.Self())
		done, err := act(ctx, c, clk, r, log)
		lock.Unlock()
		if err != nil || done {
			return err
		}
		// Stay away from the lock for a while: retrying at once would win
		// every race against the DaemonSet pod, which polls once a second.
		backoff := max(3*time.Second, 2*c.Interval)
		log.Info("yielded to the DaemonSet pod", "retryIn", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-clk.After(backoff):
		}
	}
}

// act serves and reconciles until ctx ends (done), the copy yields (not
// done), or the teardown completes (done once ctx ends).
func act(ctx context.Context, c Config, clk clock.Clock, r *Reconciler, log *slog.Logger) (bool, error) {
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return true, fmt.Errorf("cannot serve /healthz and /metrics on %s: %w", c.Listen, err)
	}
	srv := &http.Server{Handler: Handler(r, 3*c.Interval+10*time.Second), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()

	for {
		start := clk.Now()
		res, err := r.Reconcile(ctx)
		if err != nil {
			log.Warn("reconcile incomplete", "err", err)
		}
		if res.TornDown && err == nil {
			log.Info("every checkpoint removed; waiting to be stopped")
			<-ctx.Done()
			return true, nil
		}
		if res.Yield {
			return false, nil
		}
		every := c.Interval
		if res.Busy {
			every = c.BusyInterval
		}
		select {
		case <-ctx.Done():
			return true, nil
		case <-clk.After(every - clk.Since(start)):
		}
	}
}

// Handler serves /healthz, healthy while reconciles keep completing within
// staleAfter, and /metrics.
func Handler(r *Reconciler, staleAfter time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		last := r.LastSuccess()
		if last.IsZero() || r.Clock.Since(last) > staleAfter {
			http.Error(w, "no reconcile completed in the last "+staleAfter.String(), http.StatusServiceUnavailable)
			return
		}
		if cause := r.CredentialsRefused(); cause != "" {
			http.Error(w, "the API server refuses this checkpointer's credentials: "+cause, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(r.Metrics.Registry, promhttp.HandlerOpts{}))
	return mux
}

// Defaults of the command's flags.
const (
	DefaultInterval = 5 * time.Second
	// DefaultBusyInterval: a checkpoint activates or hands over within a
	// second of its grace ending rather than of a whole interval. Only those
	// few seconds are polled this often: a recovering node's CPU is scarce.
	DefaultBusyInterval = time.Second
	DefaultMinStable    = 10 * time.Second
	DefaultRefreshEvery = time.Minute
	// DefaultTokenLifetime is how long a kept token lives: the longest API
	// outage after which a node's checkpointer still reaches the API by
	// itself. Renewed at half-life, so at least half of it is always left.
	DefaultTokenLifetime  = 7 * 24 * time.Hour
	DefaultHeartbeatEvery = time.Minute
)

// lazyAPI builds the API client on first use and again after each failure,
// so that missing credentials (a token not yet issued, a kubeconfig not yet
// written) look like an API that is down: local duties go on meanwhile.
type lazyAPI struct {
	build func() (API, error)
	api   API
}

func (l *lazyAPI) get() (API, error) {
	if l.api != nil {
		return l.api, nil
	}
	a, err := l.build()
	if err != nil {
		return nil, err
	}
	l.api = a
	return a, nil
}

func (l *lazyAPI) ParentPods(ctx context.Context) ([]corev1.Pod, error) {
	a, err := l.get()
	if err != nil {
		return nil, err
	}
	return a.ParentPods(ctx)
}

func (l *lazyAPI) VolumeData(ctx context.Context, kind, name string) (map[string][]byte, bool, error) {
	a, err := l.get()
	if err != nil {
		return nil, false, err
	}
	return a.VolumeData(ctx, kind, name)
}

func (l *lazyAPI) ServiceAccountToken(ctx context.Context, account, audience string, lifetime time.Duration) ([]byte, error) {
	a, err := l.get()
	if err != nil {
		return nil, err
	}
	return a.ServiceAccountToken(ctx, account, audience, lifetime)
}

func (l *lazyAPI) DaemonSetGone(ctx context.Context) (bool, error) {
	a, err := l.get()
	if err != nil {
		return false, err
	}
	return a.DaemonSetGone(ctx)
}

func (l *lazyAPI) OwnerWantsNode(ctx context.Context, owner string) (bool, error) {
	a, err := l.get()
	if err != nil {
		return false, err
	}
	return a.OwnerWantsNode(ctx, owner)
}

func (l *lazyAPI) PublishStatus(ctx context.Context, st checkpoint.NodeStatus) error {
	a, err := l.get()
	if err != nil {
		return err
	}
	return a.PublishStatus(ctx, st)
}

func (l *lazyAPI) ClearStatus(ctx context.Context) error {
	a, err := l.get()
	if err != nil {
		return err
	}
	if c, ok := a.(interface{ ClearStatus(context.Context) error }); ok {
		return c.ClearStatus(ctx)
	}
	return nil
}
