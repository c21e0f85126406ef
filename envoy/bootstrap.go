// Package envoy renders Envoy's configuration from sluice's config file: the
// TLS listener that terminates agents' CONNECT tunnels, jwt_authn, the
// ext_proc filter pointed at `sluice serve`, and one route and cluster per
// target. The same builders serve the static bootstrap and, later, xDS.
package envoy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluicedb/sluice/config"
	sluiceextproc "github.com/sluicedb/sluice/extproc"
)

// Names shared between the generated configuration and sluice.
const (
	ListenerName   = "sluice_tunnels"
	RouteName      = "sluice_targets"
	ExtProcCluster = "sluice_extproc"
	JWTProvider    = "sluice_agents"
)

// ClusterName is the Envoy cluster of a target.
func ClusterName(target string) string { return "target_" + target }

// Bootstrap renders a complete static bootstrap.
func Bootstrap(c *config.Config) (*bootstrapv3.Bootstrap, error) {
	return bootstrap(c, true)
}

// BaselineBootstrap renders the same gateway without the ext_proc filter:
// tunnels pass unchecked. It exists only so the bench command can measure
// what sluice itself costs; never deploy it.
func BaselineBootstrap(c *config.Config) (*bootstrapv3.Bootstrap, error) {
	return bootstrap(c, false)
}

func bootstrap(c *config.Config, withExtProc bool) (*bootstrapv3.Bootstrap, error) {
	l, err := listener(c, withExtProc, false)
	if err != nil {
		return nil, err
	}
	clusters, err := Clusters(c)
	if err != nil {
		return nil, err
	}
	admin, err := socketAddress(c.Envoy.Admin)
	if err != nil {
		return nil, fmt.Errorf("envoy.admin: %w", err)
	}
	b := &bootstrapv3.Bootstrap{
		Node:  &corev3.Node{Id: "sluice-envoy", Cluster: "sluice"},
		Admin: &bootstrapv3.Admin{Address: admin},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: []*listenerv3.Listener{l},
			Clusters:  clusters,
		},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("generated bootstrap is invalid: %w", err)
	}
	return b, nil
}

// JSON renders a message the way Envoy reads it (JSON is also valid YAML).
func JSON(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("cannot encode envoy config: %w", err)
	}
	// protojson varies its whitespace on purpose; re-indent for stable output.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, fmt.Errorf("cannot indent envoy config: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// Listener is the TLS listener terminating agents' CONNECT tunnels, with its
// routes and certificate inline (static bootstrap).
func Listener(c *config.Config) (*listenerv3.Listener, error) {
	return listener(c, true, false)
}

// DynamicListener is the same listener for xDS: routes come by RDS and the
// certificate by SDS, so changing targets or rotating the certificate does
// not replace the listener (which would drain live tunnels).
func DynamicListener(c *config.Config) (*listenerv3.Listener, error) {
	return listener(c, true, true)
}

// CertSecret names the gateway certificate served by SDS.
const CertSecret = "sluice_gateway_cert"

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func listener(c *config.Config, withExtProc, dynamic bool) (*listenerv3.Listener, error) {
	addr, err := socketAddress(c.Envoy.Listen)
	if err != nil {
		return nil, fmt.Errorf("envoy.listen: %w", err)
	}
	idle := durationpb.New(time.Duration(c.Envoy.IdleTimeout))
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "sluice",
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{
			RouteConfig: RouteConfig(c),
		},
		// A tunnel carries a whole database session: no request deadline, and
		// only silence (no bytes either way) beyond IdleTimeout ends it.
		StreamIdleTimeout:     idle,
		RequestTimeout:        durationpb.New(0),
		RequestHeadersTimeout: durationpb.New(10 * time.Second),
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			IdleTimeout: idle,
		},
		Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
			AllowConnect:        true,
			ConnectionKeepalive: &corev3.KeepaliveSettings{Interval: durationpb.New(30 * time.Second), Timeout: durationpb.New(10 * time.Second)},
		},
		UpgradeConfigs: []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "CONNECT"}},
		HttpFilters: []*hcmv3.HttpFilter{
			// A client's own copy of the claims header never reaches
			// jwt_authn, which sets it from the verified token.
			typedFilter("envoy.filters.http.header_mutation", stripClaims()),
			typedFilter("envoy.filters.http.jwt_authn", jwtFilter(c)),
			typedFilter("envoy.filters.http.ext_proc", extProcFilter()),
			typedFilter("envoy.filters.http.router", &routerv3.Router{}),
		},
		AccessLog: []*accesslogv3.AccessLog{{
			Name:       "envoy.access_loggers.stdout",
			ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&streamv3.StdoutAccessLog{})},
		}},
	}
	if !withExtProc {
		hcm.HttpFilters = slices.DeleteFunc(hcm.HttpFilters, func(f *hcmv3.HttpFilter) bool { return f.Name == "envoy.filters.http.ext_proc" })
	} else {
		// Envoy's own reply when ext_proc fails has no body; say why, so
		// the connector (and anyone reading a capture) can tell the client.
		hcm.LocalReplyConfig = &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{{
			Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
				StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
					Op: accesslogv3.ComparisonFilter_EQ, Value: &corev3.RuntimeUInt32{DefaultValue: ExtProcErrorStatus, RuntimeKey: "sluice.extproc_error_status"},
				}},
			}},
			Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: ExtProcErrorBody}},
		}}}
	}
	if c.Telemetry.OTLPEndpoint != "" {
		// One span per tunnel; ext_proc carries its context to sluice.
		hcm.Tracing = &hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{
			Name: "envoy.tracers.opentelemetry",
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.OpenTelemetryConfig{
				GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: OTLPCluster},
				}},
				ServiceName: "sluice-envoy",
			})},
		}}
	}
	tls := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols: []string{"h2", "http/1.1"},
		TlsCertificates: []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: c.Path(c.Envoy.TLSCert)}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: c.Path(c.Envoy.TLSKey)}},
		}},
	}}
	if dynamic {
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: RouteName, ConfigSource: adsSource()}}
		tls.CommonTlsContext.TlsCertificates = nil
		tls.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: CertSecret, SdsConfig: adsSource()}}
	}
	return &listenerv3.Listener{
		Name:    ListenerName,
		Address: addr,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
			}},
			TransportSocket: &corev3.TransportSocket{
				Name:       "envoy.transport_sockets.tls",
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(tls)},
			},
		}},
	}, nil
}

// RouteConfig routes each target's CONNECT authority to its cluster.
func RouteConfig(c *config.Config) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: RouteName}
	for _, t := range c.Targets {
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    t.Name,
			Domains: []string{t.Name, t.Name + ":*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_ConnectMatcher_{ConnectMatcher: &routev3.RouteMatch_ConnectMatcher{}}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(t.Name)},
					Timeout:          durationpb.New(0),
					IdleTimeout:      durationpb.New(time.Duration(c.Envoy.IdleTimeout)),
					UpgradeConfigs: []*routev3.RouteAction_UpgradeConfig{{
						UpgradeType:   "CONNECT",
						ConnectConfig: &routev3.RouteAction_UpgradeConfig_ConnectConfig{},
					}},
				}},
			}},
		})
	}
	return rc
}

func jwtFilter(c *config.Config) *jwtv3.JwtAuthentication {
	connect := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_ConnectMatcher_{ConnectMatcher: &routev3.RouteMatch_ConnectMatcher{}}}
	other := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	req := &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: JWTProvider}}
	provider := &jwtv3.JwtProvider{
		// No audiences here: sluice checks them, so that a token for
		// another audience is a 401 like any other invalid token, where
		// jwt_authn would answer 403.
		Issuer: c.JWT.Issuer,
		FromHeaders: []*jwtv3.JwtHeader{
			{Name: "authorization", ValuePrefix: "Bearer "},
			{Name: "proxy-authorization", ValuePrefix: "Bearer "},
		},
		Forward: false,
		// The verified claims reach sluice once, in the tunnel's headers
		// (not as metadata Envoy would attach to every body chunk).
		ForwardPayloadHeader: sluiceextproc.ClaimsHeader,
		// The same leeway and lifetime cap sluice applies (config.JWT).
		ClockSkewSeconds:  uint32(max(0, time.Duration(c.JWT.ClockSkew).Seconds())),
		RequireExpiration: true,
	}
	if c.JWT.MaxTTL > 0 {
		provider.MaxLifetime = durationpb.New(time.Duration(c.JWT.MaxTTL))
	}
	setJWKS(provider, c)
	return &jwtv3.JwtAuthentication{
		Providers: map[string]*jwtv3.JwtProvider{JWTProvider: provider},
		Rules: []*jwtv3.RequirementRule{
			{Match: connect, RequirementType: &jwtv3.RequirementRule_Requires{Requires: req}},
			{Match: other, RequirementType: &jwtv3.RequirementRule_Requires{Requires: req}},
		},
	}
}

// OTLPCluster carries Envoy's spans to the OTLP collector.
const OTLPCluster = "sluice_otlp"

// JWKSCluster is the cluster through which Envoy fetches the issuer's keys.
const JWKSCluster = "sluice_jwks"

// setJWKS sets the issuer's key set: a local file, or the issuer's JWKS URL
// fetched through JWKSCluster, cached and refetched in the background.
func setJWKS(p *jwtv3.JwtProvider, c *config.Config) {
	if c.JWT.JWKSURI == "" {
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_Filename{Filename: c.Path(c.JWT.JWKSFile)},
		}}
		return
	}
	p.JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
		HttpUri: &corev3.HttpUri{
			Uri:              c.JWT.JWKSURI,
			HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: JWKSCluster},
			Timeout:          durationpb.New(5 * time.Second),
		},
		CacheDuration: durationpb.New(5 * time.Minute),
		// Fetch when Envoy starts, not on the first agent's request, and
		// keep the last good keys if a refetch fails. The listener opens
		// without waiting for the keys (until they arrive every token is
		// refused with 401): a listener update must not hang on the issuer.
		AsyncFetch:  &jwtv3.JwksAsyncFetch{FastListener: true, FailedRefetchDuration: durationpb.New(10 * time.Second)},
		RetryPolicy: &corev3.RetryPolicy{NumRetries: wrapperspb.UInt32(3)},
	}}
}

// jwksCluster reaches the JWKS URL's host, over TLS for https URLs, checking
// the server's certificate against jwks_ca_file or the system's CAs.
func jwksCluster(c *config.Config) (*clusterv3.Cluster, error) {
	u, err := url.Parse(c.JWT.JWKSURI)
	if err != nil {
		return nil, fmt.Errorf("jwt.jwks_uri: %w", err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	cl, err := staticCluster(JWKSCluster, net.JoinHostPort(u.Hostname(), port), 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("jwt.jwks_uri: %w", err)
	}
	if u.Scheme != "https" {
		return cl, nil
	}
	ca := c.Path(c.JWT.JWKSCAFile)
	if ca == "" {
		ca = "/etc/ssl/certs/ca-certificates.crt"
	}
	san := &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_DNS,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: u.Hostname()}}}
	if net.ParseIP(u.Hostname()) != nil {
		san.SanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	cl.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: mustAny(&tlsv3.UpstreamTlsContext{
			Sni: u.Hostname(),
			CommonTlsContext: &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
				ValidationContext: &tlsv3.CertificateValidationContext{
					TrustedCa:                 &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: ca}},
					MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{san},
				},
			}},
		}),
	}}
	return cl, nil
}

// ExtProcErrorStatus is the status Envoy answers a tunnel with when its
// ext_proc stream to sluice fails (sluice serve down, or no answer in time).
const ExtProcErrorStatus = 502

// ExtProcErrorBody is that reply's body.
const ExtProcErrorBody = "sluice: the gateway cannot reach its policy service (sluice serve), so it refuses every tunnel until it is back\n"

func extProcFilter() *extprocv3.ExternalProcessor {
	return &extprocv3.ExternalProcessor{
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ExtProcCluster},
		}},
		// Fail closed: if sluice is down or errs, the tunnel fails, with a
		// status of its own (sluice never refuses with it) that the local
		// reply mapper gives a reason.
		FailureModeAllow: false,
		StatusOnError:    &typev3.HttpStatus{Code: typev3.StatusCode_BadGateway},
		ProcessingMode: &extprocv3.ProcessingMode{
			RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
			ResponseHeaderMode:  extprocv3.ProcessingMode_SEND,
			RequestBodyMode:     extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED,
			ResponseBodyMode:    extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED,
			RequestTrailerMode:  extprocv3.ProcessingMode_SEND,
			ResponseTrailerMode: extprocv3.ProcessingMode_SEND,
		},
		// Bounds the headers phase; body chunks have no timer in full-duplex mode.
		MessageTimeout: durationpb.New(5 * time.Second),
		// No metadata_options or request_attributes: Envoy would attach
		// them to every body chunk, and the identity comes in the headers.
	}
}

// stripClaims removes any incoming copy of the claims header.
func stripClaims() *headermutationv3.HeaderMutation {
	return &headermutationv3.HeaderMutation{Mutations: &headermutationv3.Mutations{
		RequestMutations: []*mutationrulesv3.HeaderMutation{{
			Action: &mutationrulesv3.HeaderMutation_Remove{Remove: sluiceextproc.ClaimsHeader},
		}},
	}}
}

// Clusters are one per target plus sluice's ext_proc server.
func Clusters(c *config.Config) ([]*clusterv3.Cluster, error) {
	var out []*clusterv3.Cluster
	for _, t := range c.Targets {
		cl, err := staticCluster(ClusterName(t.Name), t.Address, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("target %q: %w", t.Name, err)
		}
		cl.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{
			KeepaliveTime: wrapperspb.UInt32(60), KeepaliveInterval: wrapperspb.UInt32(15), KeepaliveProbes: wrapperspb.UInt32(4),
		}}
		out = append(out, cl)
	}
	ep, err := staticCluster(ExtProcCluster, c.ExtProc.Address, time.Second)
	if err != nil {
		return nil, fmt.Errorf("extproc.address: %w", err)
	}
	ep.TypedExtensionProtocolOptions = grpcUpstream()
	out = append(out, ep)
	if e := c.Telemetry.OTLPEndpoint; e != "" {
		oc, err := staticCluster(OTLPCluster, e, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("telemetry.otlp_endpoint: %w", err)
		}
		oc.TypedExtensionProtocolOptions = grpcUpstream()
		out = append(out, oc)
	}
	if c.JWT.JWKSURI != "" {
		jc, err := jwksCluster(c)
		if err != nil {
			return nil, err
		}
		out = append(out, jc)
	}
	return out, nil
}

// grpcUpstream makes a cluster speak HTTP/2 to sluice's gRPC server, with
// keepalive pings no more often than the server permits (see serve).
func grpcUpstream() map[string]*anypb.Any {
	return map[string]*anypb.Any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
					ConnectionKeepalive: &corev3.KeepaliveSettings{Interval: durationpb.New(20 * time.Second), Timeout: durationpb.New(5 * time.Second)},
				}},
			}},
		}),
	}
}

func staticCluster(name, address string, connectTimeout time.Duration) (*clusterv3.Cluster, error) {
	sa, err := socketAddress(address)
	if err != nil {
		return nil, err
	}
	typ := clusterv3.Cluster_STATIC
	if sa.GetPipe() == nil && net.ParseIP(sa.GetSocketAddress().GetAddress()) == nil {
		typ = clusterv3.Cluster_STRICT_DNS // a host name, e.g. under docker compose
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: sa}},
			}}}},
		},
	}, nil
}

func socketAddress(hostport string) (*corev3.Address, error) {
	if path, ok := config.UnixPath(hostport); ok {
		return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: path}}}, nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port in %q", hostport)
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}, nil
}

func typedFilter(name string, m proto.Message) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(m)}}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("cannot wrap %T: %v", m, err)) // only on a programming error
	}
	return a
}
