package org.gpo.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * Bulk disbursements: upload, follow, and cancel batches of payments.
 * Errors are google.rpc.Status with ErrorInfo (domain "gpo.dev") and, for bad fields, BadRequest.
 * REST (the gateway in gateway/): JSON in lowerCamelCase; streams are newline-delimited JSON.
 * Every string field says how long it may be ("At most N characters", counted in Unicode code points).
 * A longer value is refused with INVALID_ARGUMENT and a BadRequest violation per field (reason
 * FIELD_TOO_LONG; INVALID_HEADER in an upload's header, INVALID_PAGE_TOKEN for a page_token), except a
 * payment's own fields (PaymentInput): that payment alone is REJECTED with its reason code.
 * </pre>
 */
@io.grpc.stub.annotations.GrpcGenerated
public final class DisbursementServiceGrpc {

  private DisbursementServiceGrpc() {}

  public static final java.lang.String SERVICE_NAME = "gpo.v1.DisbursementService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.UploadBatchRequest,
      org.gpo.v1.UploadBatchResponse> getUploadBatchMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "UploadBatch",
      requestType = org.gpo.v1.UploadBatchRequest.class,
      responseType = org.gpo.v1.UploadBatchResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
  public static io.grpc.MethodDescriptor<org.gpo.v1.UploadBatchRequest,
      org.gpo.v1.UploadBatchResponse> getUploadBatchMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.UploadBatchRequest, org.gpo.v1.UploadBatchResponse> getUploadBatchMethod;
    if ((getUploadBatchMethod = DisbursementServiceGrpc.getUploadBatchMethod) == null) {
      synchronized (DisbursementServiceGrpc.class) {
        if ((getUploadBatchMethod = DisbursementServiceGrpc.getUploadBatchMethod) == null) {
          DisbursementServiceGrpc.getUploadBatchMethod = getUploadBatchMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.UploadBatchRequest, org.gpo.v1.UploadBatchResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "UploadBatch"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.UploadBatchRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.UploadBatchResponse.getDefaultInstance()))
              .setSchemaDescriptor(new DisbursementServiceMethodDescriptorSupplier("UploadBatch"))
              .build();
        }
      }
    }
    return getUploadBatchMethod;
  }

  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.GetBatchRequest,
      org.gpo.v1.Batch> getGetBatchMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetBatch",
      requestType = org.gpo.v1.GetBatchRequest.class,
      responseType = org.gpo.v1.Batch.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<org.gpo.v1.GetBatchRequest,
      org.gpo.v1.Batch> getGetBatchMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.GetBatchRequest, org.gpo.v1.Batch> getGetBatchMethod;
    if ((getGetBatchMethod = DisbursementServiceGrpc.getGetBatchMethod) == null) {
      synchronized (DisbursementServiceGrpc.class) {
        if ((getGetBatchMethod = DisbursementServiceGrpc.getGetBatchMethod) == null) {
          DisbursementServiceGrpc.getGetBatchMethod = getGetBatchMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.GetBatchRequest, org.gpo.v1.Batch>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetBatch"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.GetBatchRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.Batch.getDefaultInstance()))
              .setSchemaDescriptor(new DisbursementServiceMethodDescriptorSupplier("GetBatch"))
              .build();
        }
      }
    }
    return getGetBatchMethod;
  }

  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.ListBatchesRequest,
      org.gpo.v1.ListBatchesResponse> getListBatchesMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListBatches",
      requestType = org.gpo.v1.ListBatchesRequest.class,
      responseType = org.gpo.v1.ListBatchesResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<org.gpo.v1.ListBatchesRequest,
      org.gpo.v1.ListBatchesResponse> getListBatchesMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.ListBatchesRequest, org.gpo.v1.ListBatchesResponse> getListBatchesMethod;
    if ((getListBatchesMethod = DisbursementServiceGrpc.getListBatchesMethod) == null) {
      synchronized (DisbursementServiceGrpc.class) {
        if ((getListBatchesMethod = DisbursementServiceGrpc.getListBatchesMethod) == null) {
          DisbursementServiceGrpc.getListBatchesMethod = getListBatchesMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.ListBatchesRequest, org.gpo.v1.ListBatchesResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListBatches"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ListBatchesRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ListBatchesResponse.getDefaultInstance()))
              .setSchemaDescriptor(new DisbursementServiceMethodDescriptorSupplier("ListBatches"))
              .build();
        }
      }
    }
    return getListBatchesMethod;
  }

  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.ListPaymentsRequest,
      org.gpo.v1.ListPaymentsResponse> getListPaymentsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListPayments",
      requestType = org.gpo.v1.ListPaymentsRequest.class,
      responseType = org.gpo.v1.ListPaymentsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<org.gpo.v1.ListPaymentsRequest,
      org.gpo.v1.ListPaymentsResponse> getListPaymentsMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.ListPaymentsRequest, org.gpo.v1.ListPaymentsResponse> getListPaymentsMethod;
    if ((getListPaymentsMethod = DisbursementServiceGrpc.getListPaymentsMethod) == null) {
      synchronized (DisbursementServiceGrpc.class) {
        if ((getListPaymentsMethod = DisbursementServiceGrpc.getListPaymentsMethod) == null) {
          DisbursementServiceGrpc.getListPaymentsMethod = getListPaymentsMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.ListPaymentsRequest, org.gpo.v1.ListPaymentsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListPayments"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ListPaymentsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ListPaymentsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new DisbursementServiceMethodDescriptorSupplier("ListPayments"))
              .build();
        }
      }
    }
    return getListPaymentsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.WatchBatchRequest,
      org.gpo.v1.WatchBatchResponse> getWatchBatchMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "WatchBatch",
      requestType = org.gpo.v1.WatchBatchRequest.class,
      responseType = org.gpo.v1.WatchBatchResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<org.gpo.v1.WatchBatchRequest,
      org.gpo.v1.WatchBatchResponse> getWatchBatchMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.WatchBatchRequest, org.gpo.v1.WatchBatchResponse> getWatchBatchMethod;
    if ((getWatchBatchMethod = DisbursementServiceGrpc.getWatchBatchMethod) == null) {
      synchronized (DisbursementServiceGrpc.class) {
        if ((getWatchBatchMethod = DisbursementServiceGrpc.getWatchBatchMethod) == null) {
          DisbursementServiceGrpc.getWatchBatchMethod = getWatchBatchMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.WatchBatchRequest, org.gpo.v1.WatchBatchResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "WatchBatch"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.WatchBatchRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.WatchBatchResponse.getDefaultInstance()))
              .setSchemaDescriptor(new DisbursementServiceMethodDescriptorSupplier("WatchBatch"))
              .build();
        }
      }
    }
    return getWatchBatchMethod;
  }

  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.CancelBatchRequest,
      org.gpo.v1.Batch> getCancelBatchMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "CancelBatch",
      requestType = org.gpo.v1.CancelBatchRequest.class,
      responseType = org.gpo.v1.Batch.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<org.gpo.v1.CancelBatchRequest,
      org.gpo.v1.Batch> getCancelBatchMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.CancelBatchRequest, org.gpo.v1.Batch> getCancelBatchMethod;
    if ((getCancelBatchMethod = DisbursementServiceGrpc.getCancelBatchMethod) == null) {
      synchronized (DisbursementServiceGrpc.class) {
        if ((getCancelBatchMethod = DisbursementServiceGrpc.getCancelBatchMethod) == null) {
          DisbursementServiceGrpc.getCancelBatchMethod = getCancelBatchMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.CancelBatchRequest, org.gpo.v1.Batch>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "CancelBatch"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.CancelBatchRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.Batch.getDefaultInstance()))
              .setSchemaDescriptor(new DisbursementServiceMethodDescriptorSupplier("CancelBatch"))
              .build();
        }
      }
    }
    return getCancelBatchMethod;
  }

  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.RetryFailedPaymentsRequest,
      org.gpo.v1.Batch> getRetryFailedPaymentsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "RetryFailedPayments",
      requestType = org.gpo.v1.RetryFailedPaymentsRequest.class,
      responseType = org.gpo.v1.Batch.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<org.gpo.v1.RetryFailedPaymentsRequest,
      org.gpo.v1.Batch> getRetryFailedPaymentsMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.RetryFailedPaymentsRequest, org.gpo.v1.Batch> getRetryFailedPaymentsMethod;
    if ((getRetryFailedPaymentsMethod = DisbursementServiceGrpc.getRetryFailedPaymentsMethod) == null) {
      synchronized (DisbursementServiceGrpc.class) {
        if ((getRetryFailedPaymentsMethod = DisbursementServiceGrpc.getRetryFailedPaymentsMethod) == null) {
          DisbursementServiceGrpc.getRetryFailedPaymentsMethod = getRetryFailedPaymentsMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.RetryFailedPaymentsRequest, org.gpo.v1.Batch>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "RetryFailedPayments"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.RetryFailedPaymentsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.Batch.getDefaultInstance()))
              .setSchemaDescriptor(new DisbursementServiceMethodDescriptorSupplier("RetryFailedPayments"))
              .build();
        }
      }
    }
    return getRetryFailedPaymentsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.ListDeadLettersRequest,
      org.gpo.v1.ListDeadLettersResponse> getListDeadLettersMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListDeadLetters",
      requestType = org.gpo.v1.ListDeadLettersRequest.class,
      responseType = org.gpo.v1.ListDeadLettersResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<org.gpo.v1.ListDeadLettersRequest,
      org.gpo.v1.ListDeadLettersResponse> getListDeadLettersMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.ListDeadLettersRequest, org.gpo.v1.ListDeadLettersResponse> getListDeadLettersMethod;
    if ((getListDeadLettersMethod = DisbursementServiceGrpc.getListDeadLettersMethod) == null) {
      synchronized (DisbursementServiceGrpc.class) {
        if ((getListDeadLettersMethod = DisbursementServiceGrpc.getListDeadLettersMethod) == null) {
          DisbursementServiceGrpc.getListDeadLettersMethod = getListDeadLettersMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.ListDeadLettersRequest, org.gpo.v1.ListDeadLettersResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListDeadLetters"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ListDeadLettersRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ListDeadLettersResponse.getDefaultInstance()))
              .setSchemaDescriptor(new DisbursementServiceMethodDescriptorSupplier("ListDeadLetters"))
              .build();
        }
      }
    }
    return getListDeadLettersMethod;
  }

  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.ListAuditEventsRequest,
      org.gpo.v1.ListAuditEventsResponse> getListAuditEventsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListAuditEvents",
      requestType = org.gpo.v1.ListAuditEventsRequest.class,
      responseType = org.gpo.v1.ListAuditEventsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<org.gpo.v1.ListAuditEventsRequest,
      org.gpo.v1.ListAuditEventsResponse> getListAuditEventsMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.ListAuditEventsRequest, org.gpo.v1.ListAuditEventsResponse> getListAuditEventsMethod;
    if ((getListAuditEventsMethod = DisbursementServiceGrpc.getListAuditEventsMethod) == null) {
      synchronized (DisbursementServiceGrpc.class) {
        if ((getListAuditEventsMethod = DisbursementServiceGrpc.getListAuditEventsMethod) == null) {
          DisbursementServiceGrpc.getListAuditEventsMethod = getListAuditEventsMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.ListAuditEventsRequest, org.gpo.v1.ListAuditEventsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListAuditEvents"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ListAuditEventsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ListAuditEventsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new DisbursementServiceMethodDescriptorSupplier("ListAuditEvents"))
              .build();
        }
      }
    }
    return getListAuditEventsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.VerifyAuditTrailRequest,
      org.gpo.v1.VerifyAuditTrailResponse> getVerifyAuditTrailMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "VerifyAuditTrail",
      requestType = org.gpo.v1.VerifyAuditTrailRequest.class,
      responseType = org.gpo.v1.VerifyAuditTrailResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<org.gpo.v1.VerifyAuditTrailRequest,
      org.gpo.v1.VerifyAuditTrailResponse> getVerifyAuditTrailMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.VerifyAuditTrailRequest, org.gpo.v1.VerifyAuditTrailResponse> getVerifyAuditTrailMethod;
    if ((getVerifyAuditTrailMethod = DisbursementServiceGrpc.getVerifyAuditTrailMethod) == null) {
      synchronized (DisbursementServiceGrpc.class) {
        if ((getVerifyAuditTrailMethod = DisbursementServiceGrpc.getVerifyAuditTrailMethod) == null) {
          DisbursementServiceGrpc.getVerifyAuditTrailMethod = getVerifyAuditTrailMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.VerifyAuditTrailRequest, org.gpo.v1.VerifyAuditTrailResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "VerifyAuditTrail"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.VerifyAuditTrailRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.VerifyAuditTrailResponse.getDefaultInstance()))
              .setSchemaDescriptor(new DisbursementServiceMethodDescriptorSupplier("VerifyAuditTrail"))
              .build();
        }
      }
    }
    return getVerifyAuditTrailMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static DisbursementServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<DisbursementServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<DisbursementServiceStub>() {
        @java.lang.Override
        public DisbursementServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new DisbursementServiceStub(channel, callOptions);
        }
      };
    return DisbursementServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports all types of calls on the service
   */
  public static DisbursementServiceBlockingV2Stub newBlockingV2Stub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<DisbursementServiceBlockingV2Stub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<DisbursementServiceBlockingV2Stub>() {
        @java.lang.Override
        public DisbursementServiceBlockingV2Stub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new DisbursementServiceBlockingV2Stub(channel, callOptions);
        }
      };
    return DisbursementServiceBlockingV2Stub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static DisbursementServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<DisbursementServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<DisbursementServiceBlockingStub>() {
        @java.lang.Override
        public DisbursementServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new DisbursementServiceBlockingStub(channel, callOptions);
        }
      };
    return DisbursementServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static DisbursementServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<DisbursementServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<DisbursementServiceFutureStub>() {
        @java.lang.Override
        public DisbursementServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new DisbursementServiceFutureStub(channel, callOptions);
        }
      };
    return DisbursementServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * Bulk disbursements: upload, follow, and cancel batches of payments.
   * Errors are google.rpc.Status with ErrorInfo (domain "gpo.dev") and, for bad fields, BadRequest.
   * REST (the gateway in gateway/): JSON in lowerCamelCase; streams are newline-delimited JSON.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points).
   * A longer value is refused with INVALID_ARGUMENT and a BadRequest violation per field (reason
   * FIELD_TOO_LONG; INVALID_HEADER in an upload's header, INVALID_PAGE_TOKEN for a page_token), except a
   * payment's own fields (PaymentInput): that payment alone is REJECTED with its reason code.
   * </pre>
   */
  public interface AsyncService {

    /**
     * <pre>
     * Uploads one batch as a stream: a header, then chunks of payments, then the client half-closes.
     * Each chunk is acknowledged once it is committed, with the payments it rejected. Re-sending the
     * same request_id resumes or returns the existing batch; it never creates a second one.
     * REST: the body is newline-delimited JSON, one UploadBatchRequest per line (the header, then
     * chunks); the reply is newline-delimited JSON, one {"result": UploadBatchResponse} or
     * {"error": Status} per line.
     * </pre>
     */
    default io.grpc.stub.StreamObserver<org.gpo.v1.UploadBatchRequest> uploadBatch(
        io.grpc.stub.StreamObserver<org.gpo.v1.UploadBatchResponse> responseObserver) {
      return io.grpc.stub.ServerCalls.asyncUnimplementedStreamingCall(getUploadBatchMethod(), responseObserver);
    }

    /**
     * <pre>
     * Gets a batch with its counts and amounts per status.
     * </pre>
     */
    default void getBatch(org.gpo.v1.GetBatchRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.Batch> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetBatchMethod(), responseObserver);
    }

    /**
     * <pre>
     * Lists batches, newest first.
     * </pre>
     */
    default void listBatches(org.gpo.v1.ListBatchesRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.ListBatchesResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListBatchesMethod(), responseObserver);
    }

    /**
     * <pre>
     * Lists a batch's payments in upload order.
     * </pre>
     */
    default void listPayments(org.gpo.v1.ListPaymentsRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.ListPaymentsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListPaymentsMethod(), responseObserver);
    }

    /**
     * <pre>
     * Streams a batch's progress whenever it changes, ending once the batch is final.
     * REST: newline-delimited JSON, one {"result": WatchBatchResponse} or {"error": Status} per line.
     * </pre>
     */
    default void watchBatch(org.gpo.v1.WatchBatchRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.WatchBatchResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getWatchBatchMethod(), responseObserver);
    }

    /**
     * <pre>
     * Cancels a batch: payments not yet claimed by a rail become CANCELLED; claimed ones finish.
     * </pre>
     */
    default void cancelBatch(org.gpo.v1.CancelBatchRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.Batch> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getCancelBatchMethod(), responseObserver);
    }

    /**
     * <pre>
     * Sends a batch's FAILED payments again. A payment the rail refused for good gets a new idempotency
     * key; one that failed because the rail was unreachable keeps its key, since the rail may still hold it.
     * </pre>
     */
    default void retryFailedPayments(org.gpo.v1.RetryFailedPaymentsRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.Batch> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getRetryFailedPaymentsMethod(), responseObserver);
    }

    /**
     * <pre>
     * Lists work chunks that rail sidecars could not process (poison messages), newest first.
     * </pre>
     */
    default void listDeadLetters(org.gpo.v1.ListDeadLettersRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.ListDeadLettersResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListDeadLettersMethod(), responseObserver);
    }

    /**
     * <pre>
     * Lists the audit trail of state-changing calls, oldest first (operators only).
     * </pre>
     */
    default void listAuditEvents(org.gpo.v1.ListAuditEventsRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.ListAuditEventsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListAuditEventsMethod(), responseObserver);
    }

    /**
     * <pre>
     * Recomputes the audit trail's hash chain and says where it first breaks, if it does (operators only).
     * </pre>
     */
    default void verifyAuditTrail(org.gpo.v1.VerifyAuditTrailRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.VerifyAuditTrailResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getVerifyAuditTrailMethod(), responseObserver);
    }
  }

  /**
   * Base class for the server implementation of the service DisbursementService.
   * <pre>
   * Bulk disbursements: upload, follow, and cancel batches of payments.
   * Errors are google.rpc.Status with ErrorInfo (domain "gpo.dev") and, for bad fields, BadRequest.
   * REST (the gateway in gateway/): JSON in lowerCamelCase; streams are newline-delimited JSON.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points).
   * A longer value is refused with INVALID_ARGUMENT and a BadRequest violation per field (reason
   * FIELD_TOO_LONG; INVALID_HEADER in an upload's header, INVALID_PAGE_TOKEN for a page_token), except a
   * payment's own fields (PaymentInput): that payment alone is REJECTED with its reason code.
   * </pre>
   */
  public static abstract class DisbursementServiceImplBase
      implements io.grpc.BindableService, AsyncService {

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return DisbursementServiceGrpc.bindService(this);
    }
  }

  /**
   * A stub to allow clients to do asynchronous rpc calls to service DisbursementService.
   * <pre>
   * Bulk disbursements: upload, follow, and cancel batches of payments.
   * Errors are google.rpc.Status with ErrorInfo (domain "gpo.dev") and, for bad fields, BadRequest.
   * REST (the gateway in gateway/): JSON in lowerCamelCase; streams are newline-delimited JSON.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points).
   * A longer value is refused with INVALID_ARGUMENT and a BadRequest violation per field (reason
   * FIELD_TOO_LONG; INVALID_HEADER in an upload's header, INVALID_PAGE_TOKEN for a page_token), except a
   * payment's own fields (PaymentInput): that payment alone is REJECTED with its reason code.
   * </pre>
   */
  public static final class DisbursementServiceStub
      extends io.grpc.stub.AbstractAsyncStub<DisbursementServiceStub> {
    private DisbursementServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected DisbursementServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new DisbursementServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * Uploads one batch as a stream: a header, then chunks of payments, then the client half-closes.
     * Each chunk is acknowledged once it is committed, with the payments it rejected. Re-sending the
     * same request_id resumes or returns the existing batch; it never creates a second one.
     * REST: the body is newline-delimited JSON, one UploadBatchRequest per line (the header, then
     * chunks); the reply is newline-delimited JSON, one {"result": UploadBatchResponse} or
     * {"error": Status} per line.
     * </pre>
     */
    public io.grpc.stub.StreamObserver<org.gpo.v1.UploadBatchRequest> uploadBatch(
        io.grpc.stub.StreamObserver<org.gpo.v1.UploadBatchResponse> responseObserver) {
      return io.grpc.stub.ClientCalls.asyncBidiStreamingCall(
          getChannel().newCall(getUploadBatchMethod(), getCallOptions()), responseObserver);
    }

    /**
     * <pre>
     * Gets a batch with its counts and amounts per status.
     * </pre>
     */
    public void getBatch(org.gpo.v1.GetBatchRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.Batch> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetBatchMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Lists batches, newest first.
     * </pre>
     */
    public void listBatches(org.gpo.v1.ListBatchesRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.ListBatchesResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListBatchesMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Lists a batch's payments in upload order.
     * </pre>
     */
    public void listPayments(org.gpo.v1.ListPaymentsRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.ListPaymentsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListPaymentsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Streams a batch's progress whenever it changes, ending once the batch is final.
     * REST: newline-delimited JSON, one {"result": WatchBatchResponse} or {"error": Status} per line.
     * </pre>
     */
    public void watchBatch(org.gpo.v1.WatchBatchRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.WatchBatchResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getWatchBatchMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Cancels a batch: payments not yet claimed by a rail become CANCELLED; claimed ones finish.
     * </pre>
     */
    public void cancelBatch(org.gpo.v1.CancelBatchRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.Batch> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getCancelBatchMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Sends a batch's FAILED payments again. A payment the rail refused for good gets a new idempotency
     * key; one that failed because the rail was unreachable keeps its key, since the rail may still hold it.
     * </pre>
     */
    public void retryFailedPayments(org.gpo.v1.RetryFailedPaymentsRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.Batch> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getRetryFailedPaymentsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Lists work chunks that rail sidecars could not process (poison messages), newest first.
     * </pre>
     */
    public void listDeadLetters(org.gpo.v1.ListDeadLettersRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.ListDeadLettersResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListDeadLettersMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Lists the audit trail of state-changing calls, oldest first (operators only).
     * </pre>
     */
    public void listAuditEvents(org.gpo.v1.ListAuditEventsRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.ListAuditEventsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListAuditEventsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Recomputes the audit trail's hash chain and says where it first breaks, if it does (operators only).
     * </pre>
     */
    public void verifyAuditTrail(org.gpo.v1.VerifyAuditTrailRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.VerifyAuditTrailResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getVerifyAuditTrailMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * A stub to allow clients to do synchronous rpc calls to service DisbursementService.
   * <pre>
   * Bulk disbursements: upload, follow, and cancel batches of payments.
   * Errors are google.rpc.Status with ErrorInfo (domain "gpo.dev") and, for bad fields, BadRequest.
   * REST (the gateway in gateway/): JSON in lowerCamelCase; streams are newline-delimited JSON.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points).
   * A longer value is refused with INVALID_ARGUMENT and a BadRequest violation per field (reason
   * FIELD_TOO_LONG; INVALID_HEADER in an upload's header, INVALID_PAGE_TOKEN for a page_token), except a
   * payment's own fields (PaymentInput): that payment alone is REJECTED with its reason code.
   * </pre>
   */
  public static final class DisbursementServiceBlockingV2Stub
      extends io.grpc.stub.AbstractBlockingStub<DisbursementServiceBlockingV2Stub> {
    private DisbursementServiceBlockingV2Stub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected DisbursementServiceBlockingV2Stub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new DisbursementServiceBlockingV2Stub(channel, callOptions);
    }

    /**
     * <pre>
     * Uploads one batch as a stream: a header, then chunks of payments, then the client half-closes.
     * Each chunk is acknowledged once it is committed, with the payments it rejected. Re-sending the
     * same request_id resumes or returns the existing batch; it never creates a second one.
     * REST: the body is newline-delimited JSON, one UploadBatchRequest per line (the header, then
     * chunks); the reply is newline-delimited JSON, one {"result": UploadBatchResponse} or
     * {"error": Status} per line.
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<org.gpo.v1.UploadBatchRequest, org.gpo.v1.UploadBatchResponse>
        uploadBatch() {
      return io.grpc.stub.ClientCalls.blockingBidiStreamingCall(
          getChannel(), getUploadBatchMethod(), getCallOptions());
    }

    /**
     * <pre>
     * Gets a batch with its counts and amounts per status.
     * </pre>
     */
    public org.gpo.v1.Batch getBatch(org.gpo.v1.GetBatchRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getGetBatchMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists batches, newest first.
     * </pre>
     */
    public org.gpo.v1.ListBatchesResponse listBatches(org.gpo.v1.ListBatchesRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getListBatchesMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists a batch's payments in upload order.
     * </pre>
     */
    public org.gpo.v1.ListPaymentsResponse listPayments(org.gpo.v1.ListPaymentsRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getListPaymentsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Streams a batch's progress whenever it changes, ending once the batch is final.
     * REST: newline-delimited JSON, one {"result": WatchBatchResponse} or {"error": Status} per line.
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<?, org.gpo.v1.WatchBatchResponse>
        watchBatch(org.gpo.v1.WatchBatchRequest request) {
      return io.grpc.stub.ClientCalls.blockingV2ServerStreamingCall(
          getChannel(), getWatchBatchMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Cancels a batch: payments not yet claimed by a rail become CANCELLED; claimed ones finish.
     * </pre>
     */
    public org.gpo.v1.Batch cancelBatch(org.gpo.v1.CancelBatchRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getCancelBatchMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Sends a batch's FAILED payments again. A payment the rail refused for good gets a new idempotency
     * key; one that failed because the rail was unreachable keeps its key, since the rail may still hold it.
     * </pre>
     */
    public org.gpo.v1.Batch retryFailedPayments(org.gpo.v1.RetryFailedPaymentsRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getRetryFailedPaymentsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists work chunks that rail sidecars could not process (poison messages), newest first.
     * </pre>
     */
    public org.gpo.v1.ListDeadLettersResponse listDeadLetters(org.gpo.v1.ListDeadLettersRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getListDeadLettersMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists the audit trail of state-changing calls, oldest first (operators only).
     * </pre>
     */
    public org.gpo.v1.ListAuditEventsResponse listAuditEvents(org.gpo.v1.ListAuditEventsRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getListAuditEventsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Recomputes the audit trail's hash chain and says where it first breaks, if it does (operators only).
     * </pre>
     */
    public org.gpo.v1.VerifyAuditTrailResponse verifyAuditTrail(org.gpo.v1.VerifyAuditTrailRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getVerifyAuditTrailMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do limited synchronous rpc calls to service DisbursementService.
   * <pre>
   * Bulk disbursements: upload, follow, and cancel batches of payments.
   * Errors are google.rpc.Status with ErrorInfo (domain "gpo.dev") and, for bad fields, BadRequest.
   * REST (the gateway in gateway/): JSON in lowerCamelCase; streams are newline-delimited JSON.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points).
   * A longer value is refused with INVALID_ARGUMENT and a BadRequest violation per field (reason
   * FIELD_TOO_LONG; INVALID_HEADER in an upload's header, INVALID_PAGE_TOKEN for a page_token), except a
   * payment's own fields (PaymentInput): that payment alone is REJECTED with its reason code.
   * </pre>
   */
  public static final class DisbursementServiceBlockingStub
      extends io.grpc.stub.AbstractBlockingStub<DisbursementServiceBlockingStub> {
    private DisbursementServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected DisbursementServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new DisbursementServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Gets a batch with its counts and amounts per status.
     * </pre>
     */
    public org.gpo.v1.Batch getBatch(org.gpo.v1.GetBatchRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetBatchMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists batches, newest first.
     * </pre>
     */
    public org.gpo.v1.ListBatchesResponse listBatches(org.gpo.v1.ListBatchesRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListBatchesMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists a batch's payments in upload order.
     * </pre>
     */
    public org.gpo.v1.ListPaymentsResponse listPayments(org.gpo.v1.ListPaymentsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListPaymentsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Streams a batch's progress whenever it changes, ending once the batch is final.
     * REST: newline-delimited JSON, one {"result": WatchBatchResponse} or {"error": Status} per line.
     * </pre>
     */
    public java.util.Iterator<org.gpo.v1.WatchBatchResponse> watchBatch(
        org.gpo.v1.WatchBatchRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getWatchBatchMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Cancels a batch: payments not yet claimed by a rail become CANCELLED; claimed ones finish.
     * </pre>
     */
    public org.gpo.v1.Batch cancelBatch(org.gpo.v1.CancelBatchRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getCancelBatchMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Sends a batch's FAILED payments again. A payment the rail refused for good gets a new idempotency
     * key; one that failed because the rail was unreachable keeps its key, since the rail may still hold it.
     * </pre>
     */
    public org.gpo.v1.Batch retryFailedPayments(org.gpo.v1.RetryFailedPaymentsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getRetryFailedPaymentsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists work chunks that rail sidecars could not process (poison messages), newest first.
     * </pre>
     */
    public org.gpo.v1.ListDeadLettersResponse listDeadLetters(org.gpo.v1.ListDeadLettersRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListDeadLettersMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists the audit trail of state-changing calls, oldest first (operators only).
     * </pre>
     */
    public org.gpo.v1.ListAuditEventsResponse listAuditEvents(org.gpo.v1.ListAuditEventsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListAuditEventsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Recomputes the audit trail's hash chain and says where it first breaks, if it does (operators only).
     * </pre>
     */
    public org.gpo.v1.VerifyAuditTrailResponse verifyAuditTrail(org.gpo.v1.VerifyAuditTrailRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getVerifyAuditTrailMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do ListenableFuture-style rpc calls to service DisbursementService.
   * <pre>
   * Bulk disbursements: upload, follow, and cancel batches of payments.
   * Errors are google.rpc.Status with ErrorInfo (domain "gpo.dev") and, for bad fields, BadRequest.
   * REST (the gateway in gateway/): JSON in lowerCamelCase; streams are newline-delimited JSON.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points).
   * A longer value is refused with INVALID_ARGUMENT and a BadRequest violation per field (reason
   * FIELD_TOO_LONG; INVALID_HEADER in an upload's header, INVALID_PAGE_TOKEN for a page_token), except a
   * payment's own fields (PaymentInput): that payment alone is REJECTED with its reason code.
   * </pre>
   */
  public static final class DisbursementServiceFutureStub
      extends io.grpc.stub.AbstractFutureStub<DisbursementServiceFutureStub> {
    private DisbursementServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected DisbursementServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new DisbursementServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Gets a batch with its counts and amounts per status.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<org.gpo.v1.Batch> getBatch(
        org.gpo.v1.GetBatchRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetBatchMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Lists batches, newest first.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<org.gpo.v1.ListBatchesResponse> listBatches(
        org.gpo.v1.ListBatchesRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListBatchesMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Lists a batch's payments in upload order.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<org.gpo.v1.ListPaymentsResponse> listPayments(
        org.gpo.v1.ListPaymentsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListPaymentsMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Cancels a batch: payments not yet claimed by a rail become CANCELLED; claimed ones finish.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<org.gpo.v1.Batch> cancelBatch(
        org.gpo.v1.CancelBatchRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getCancelBatchMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Sends a batch's FAILED payments again. A payment the rail refused for good gets a new idempotency
     * key; one that failed because the rail was unreachable keeps its key, since the rail may still hold it.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<org.gpo.v1.Batch> retryFailedPayments(
        org.gpo.v1.RetryFailedPaymentsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getRetryFailedPaymentsMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Lists work chunks that rail sidecars could not process (poison messages), newest first.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<org.gpo.v1.ListDeadLettersResponse> listDeadLetters(
        org.gpo.v1.ListDeadLettersRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListDeadLettersMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Lists the audit trail of state-changing calls, oldest first (operators only).
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<org.gpo.v1.ListAuditEventsResponse> listAuditEvents(
        org.gpo.v1.ListAuditEventsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListAuditEventsMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Recomputes the audit trail's hash chain and says where it first breaks, if it does (operators only).
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<org.gpo.v1.VerifyAuditTrailResponse> verifyAuditTrail(
        org.gpo.v1.VerifyAuditTrailRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getVerifyAuditTrailMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_GET_BATCH = 0;
  private static final int METHODID_LIST_BATCHES = 1;
  private static final int METHODID_LIST_PAYMENTS = 2;
  private static final int METHODID_WATCH_BATCH = 3;
  private static final int METHODID_CANCEL_BATCH = 4;
  private static final int METHODID_RETRY_FAILED_PAYMENTS = 5;
  private static final int METHODID_LIST_DEAD_LETTERS = 6;
  private static final int METHODID_LIST_AUDIT_EVENTS = 7;
  private static final int METHODID_VERIFY_AUDIT_TRAIL = 8;
  private static final int METHODID_UPLOAD_BATCH = 9;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final AsyncService serviceImpl;
    private final int methodId;

    MethodHandlers(AsyncService serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_GET_BATCH:
          serviceImpl.getBatch((org.gpo.v1.GetBatchRequest) request,
              (io.grpc.stub.StreamObserver<org.gpo.v1.Batch>) responseObserver);
          break;
        case METHODID_LIST_BATCHES:
          serviceImpl.listBatches((org.gpo.v1.ListBatchesRequest) request,
              (io.grpc.stub.StreamObserver<org.gpo.v1.ListBatchesResponse>) responseObserver);
          break;
        case METHODID_LIST_PAYMENTS:
          serviceImpl.listPayments((org.gpo.v1.ListPaymentsRequest) request,
              (io.grpc.stub.StreamObserver<org.gpo.v1.ListPaymentsResponse>) responseObserver);
          break;
        case METHODID_WATCH_BATCH:
          serviceImpl.watchBatch((org.gpo.v1.WatchBatchRequest) request,
              (io.grpc.stub.StreamObserver<org.gpo.v1.WatchBatchResponse>) responseObserver);
          break;
        case METHODID_CANCEL_BATCH:
          serviceImpl.cancelBatch((org.gpo.v1.CancelBatchRequest) request,
              (io.grpc.stub.StreamObserver<org.gpo.v1.Batch>) responseObserver);
          break;
        case METHODID_RETRY_FAILED_PAYMENTS:
          serviceImpl.retryFailedPayments((org.gpo.v1.RetryFailedPaymentsRequest) request,
              (io.grpc.stub.StreamObserver<org.gpo.v1.Batch>) responseObserver);
          break;
        case METHODID_LIST_DEAD_LETTERS:
          serviceImpl.listDeadLetters((org.gpo.v1.ListDeadLettersRequest) request,
              (io.grpc.stub.StreamObserver<org.gpo.v1.ListDeadLettersResponse>) responseObserver);
          break;
        case METHODID_LIST_AUDIT_EVENTS:
          serviceImpl.listAuditEvents((org.gpo.v1.ListAuditEventsRequest) request,
              (io.grpc.stub.StreamObserver<org.gpo.v1.ListAuditEventsResponse>) responseObserver);
          break;
        case METHODID_VERIFY_AUDIT_TRAIL:
          serviceImpl.verifyAuditTrail((org.gpo.v1.VerifyAuditTrailRequest) request,
              (io.grpc.stub.StreamObserver<org.gpo.v1.VerifyAuditTrailResponse>) responseObserver);
          break;
        default:
          throw new AssertionError();
      }
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public io.grpc.stub.StreamObserver<Req> invoke(
        io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_UPLOAD_BATCH:
          return (io.grpc.stub.StreamObserver<Req>) serviceImpl.uploadBatch(
              (io.grpc.stub.StreamObserver<org.gpo.v1.UploadBatchResponse>) responseObserver);
        default:
          throw new AssertionError();
      }
    }
  }

  public static final io.grpc.ServerServiceDefinition bindService(AsyncService service) {
    return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
        .addMethod(
          getUploadBatchMethod(),
          io.grpc.stub.ServerCalls.asyncBidiStreamingCall(
            new MethodHandlers<
              org.gpo.v1.UploadBatchRequest,
              org.gpo.v1.UploadBatchResponse>(
                service, METHODID_UPLOAD_BATCH)))
        .addMethod(
          getGetBatchMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              org.gpo.v1.GetBatchRequest,
              org.gpo.v1.Batch>(
                service, METHODID_GET_BATCH)))
        .addMethod(
          getListBatchesMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              org.gpo.v1.ListBatchesRequest,
              org.gpo.v1.ListBatchesResponse>(
                service, METHODID_LIST_BATCHES)))
        .addMethod(
          getListPaymentsMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              org.gpo.v1.ListPaymentsRequest,
              org.gpo.v1.ListPaymentsResponse>(
                service, METHODID_LIST_PAYMENTS)))
        .addMethod(
          getWatchBatchMethod(),
          io.grpc.stub.ServerCalls.asyncServerStreamingCall(
            new MethodHandlers<
              org.gpo.v1.WatchBatchRequest,
              org.gpo.v1.WatchBatchResponse>(
                service, METHODID_WATCH_BATCH)))
        .addMethod(
          getCancelBatchMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              org.gpo.v1.CancelBatchRequest,
              org.gpo.v1.Batch>(
                service, METHODID_CANCEL_BATCH)))
        .addMethod(
          getRetryFailedPaymentsMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              org.gpo.v1.RetryFailedPaymentsRequest,
              org.gpo.v1.Batch>(
                service, METHODID_RETRY_FAILED_PAYMENTS)))
        .addMethod(
          getListDeadLettersMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              org.gpo.v1.ListDeadLettersRequest,
              org.gpo.v1.ListDeadLettersResponse>(
                service, METHODID_LIST_DEAD_LETTERS)))
        .addMethod(
          getListAuditEventsMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              org.gpo.v1.ListAuditEventsRequest,
              org.gpo.v1.ListAuditEventsResponse>(
                service, METHODID_LIST_AUDIT_EVENTS)))
        .addMethod(
          getVerifyAuditTrailMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              org.gpo.v1.VerifyAuditTrailRequest,
              org.gpo.v1.VerifyAuditTrailResponse>(
                service, METHODID_VERIFY_AUDIT_TRAIL)))
        .build();
  }

  private static abstract class DisbursementServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    DisbursementServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return org.gpo.v1.DisbursementServiceOuterClass.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("DisbursementService");
    }
  }

  private static final class DisbursementServiceFileDescriptorSupplier
      extends DisbursementServiceBaseDescriptorSupplier {
    DisbursementServiceFileDescriptorSupplier() {}
  }

  private static final class DisbursementServiceMethodDescriptorSupplier
      extends DisbursementServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final java.lang.String methodName;

    DisbursementServiceMethodDescriptorSupplier(java.lang.String methodName) {
      this.methodName = methodName;
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.MethodDescriptor getMethodDescriptor() {
      return getServiceDescriptor().findMethodByName(methodName);
    }
  }

  private static volatile io.grpc.ServiceDescriptor serviceDescriptor;

  public static io.grpc.ServiceDescriptor getServiceDescriptor() {
    io.grpc.ServiceDescriptor result = serviceDescriptor;
    if (result == null) {
      synchronized (DisbursementServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new DisbursementServiceFileDescriptorSupplier())
              .addMethod(getUploadBatchMethod())
              .addMethod(getGetBatchMethod())
              .addMethod(getListBatchesMethod())
              .addMethod(getListPaymentsMethod())
              .addMethod(getWatchBatchMethod())
              .addMethod(getCancelBatchMethod())
              .addMethod(getRetryFailedPaymentsMethod())
              .addMethod(getListDeadLettersMethod())
              .addMethod(getListAuditEventsMethod())
              .addMethod(getVerifyAuditTrailMethod())
              .build();
        }
      }
    }
    return result;
  }
}
