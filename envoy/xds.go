package envoy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluicedb/sluice/config"
)

// XDSCluster is the bootstrap's cluster for sluice's ADS server.
const XDSCluster = "sluice_xds"

// Snapshot builds the xDS resources from the configuration with the same
// builders as the static bootstrap: the listener (routes by RDS, certificate
// by SDS), the route configuration, the clusters and the certificate.
// listen, when set, replaces the listener address (one host, several Envoys).
func Snapshot(c *config.Config, version, listen string) (*cachev3.Snapshot, error) {
	if listen != "" {
		cc := *c
		cc.Envoy.Listen = listen
		c = &cc
	}
	l, err := DynamicListener(c)
	if err != nil {
		return nil, err
	}
	clusters, err := Clusters(c)
	if err != nil {
		return nil, err
	}
	secret, err := certSecret(c)
	if err != nil {
		return nil, err
	}
	cl := make([]types.Resource, len(clusters))
	for i, x := range clusters {
		cl[i] = x
	}
	snap, err := cachev3.NewSnapshot(version, map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: {l},
		resourcev3.RouteType:    {RouteConfig(c)},
		resourcev3.ClusterType:  cl,
		resourcev3.SecretType:   {secret},
	})
	if err != nil {
		return nil, fmt.Errorf("cannot build xds snapshot: %w", err)
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("xds snapshot is inconsistent: %w", err)
	}
	return snap, nil
}

// certSecret carries the gateway certificate inline, so a rotated file
// reaches Envoy with the next snapshot.
func certSecret(c *config.Config) (*tlsv3.Secret, error) {
	cert, err := os.ReadFile(c.Path(c.Envoy.TLSCert))
	if err != nil {
		return nil, fmt.Errorf("cannot read tls certificate: %w", err)
	}
	key, err := os.ReadFile(c.Path(c.Envoy.TLSKey))
	if err != nil {
		return nil, fmt.Errorf("cannot read tls key: %w", err)
	}
	return &tlsv3.Secret{Name: CertSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: cert}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: key}},
	}}}, nil
}

// ListenMetadata is the node metadata key by which an Envoy asks for its own
// listener address instead of the configured one.
const ListenMetadata = "sluice_listen"

// XDSBootstrap is the minimal bootstrap of an Envoy that takes everything
// else from sluice's ADS server. admin and listen, when set, override the
// configured admin address and this node's tunnel listener.
func XDSBootstrap(c *config.Config, nodeID, admin, listen string) (*bootstrapv3.Bootstrap, error) {
	if admin == "" {
		admin = c.Envoy.Admin
	}
	adminAddr, err := socketAddress(admin)
	if err != nil {
		return nil, fmt.Errorf("envoy.admin: %w", err)
	}
	xds, err := staticCluster(XDSCluster, c.ExtProc.Address, time.Second)
	if err != nil {
		return nil, fmt.Errorf("extproc.address: %w", err)
	}
	xds.TypedExtensionProtocolOptions = grpcUpstream()
	node := &corev3.Node{Id: nodeID, Cluster: "sluice"}
	if listen != "" {
		if _, err := socketAddress(listen); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		node.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{ListenMetadata: structpb.NewStringValue(listen)}}
	}
	b := &bootstrapv3.Bootstrap{
		Node:  node,
		Admin: &bootstrapv3.Admin{Address: adminAddr},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             corev3.ApiConfigSource_GRPC,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSCluster},
				}}},
			},
			LdsConfig: adsSource(),
			CdsConfig: adsSource(),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{xds}},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("generated bootstrap is invalid: %w", err)
	}
	return b, nil
}

// XDS serves ADS to any number of Envoys (node ids): every node gets the
// current snapshot, and a new configuration replaces it for all of them.
type XDS struct {
	log   *slog.Logger
	cache cachev3.SnapshotCache

	mu      sync.Mutex
	cfg     *config.Config
	nodes   map[string]string // node id → listener override
	version int
}

// NewXDS returns an ADS server holding no snapshot yet.
func NewXDS(log *slog.Logger) *XDS {
	return &XDS{log: log, cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil), nodes: map[string]string{}}
}

// Register serves ADS on g.
func (x *XDS) Register(ctx context.Context, g *grpc.Server) {
	srv := serverv3.NewServer(ctx, x.cache, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			x.seen(req.GetNode())
			return nil
		},
	})
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
}

func (x *XDS) seen(node *corev3.Node) {
	id := node.GetId()
	if id == "" {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.nodes[id]; ok {
		return
	}
	listen := node.GetMetadata().GetFields()[ListenMetadata].GetStringValue()
	x.nodes[id] = listen
	x.log.Info("envoy connected for xds", "node", id, "listen", listen)
	if x.cfg != nil {
		if err := x.set(id, listen); err != nil {
			x.log.Error("cannot serve xds node", "node", id, "err", err)
		}
	}
}

func (x *XDS) set(node, listen string) error {
	snap, err := Snapshot(x.cfg, strconv.Itoa(x.version), listen)
	if err != nil {
		return err
	}
	return x.cache.SetSnapshot(context.Background(), node, snap)
}

// Update builds snapshots from c and gives them to every node. An invalid
// configuration is refused and the last good snapshots stay.
func (x *XDS) Update(c *config.Config) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	// Build every node's snapshot first: all or nothing.
	if _, err := Snapshot(c, "check", ""); err != nil {
		return err
	}
	snaps := map[string]*cachev3.Snapshot{}
	for node, listen := range x.nodes {
		snap, err := Snapshot(c, strconv.Itoa(x.version+1), listen)
		if err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
		snaps[node] = snap
	}
	x.version++
	x.cfg = c
	for node, snap := range snaps {
		if err := x.cache.SetSnapshot(context.Background(), node, snap); err != nil {
			return fmt.Errorf("cannot set snapshot for %s: %w", node, err)
		}
	}
	return nil
}
